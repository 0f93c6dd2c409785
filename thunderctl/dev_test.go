package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/daemon/procs"
)

// devRun is one `thunderctl dev` process.
type devRun struct {
	cmd    *exec.Cmd
	stderr string // file its stderr goes to
	exited chan error
}

// startDev runs `thunderctl dev` on dir with args and waits until it
// writes its ready file; it returns the export line.
func startDev(t *testing.T, dir string, args ...string) (*devRun, string) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	d := &devRun{stderr: filepath.Join(t.TempDir(), "dev.err"), exited: make(chan error, 1)}
	errFile, err := os.Create(d.stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	d.cmd = exec.Command(thunderctlBin, append([]string{"dev", "--dir", dir, "--groups", "1", "--replicas", "1", "--coords", "1",
		"--slots", "8", "--ready-file", ready}, args...)...)
	d.cmd.Stderr = errFile
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.exited
		if t.Failed() {
			b, _ := os.ReadFile(d.stderr)
			t.Logf("dev stderr:\n%s", b)
		}
	})
	var line []byte
	eventually(t, 90*time.Second, func() error {
		select {
		case err := <-d.exited:
			d.exited <- err
			return fmt.Errorf("dev exited: %v", err) // keeps failing until the bound
		default:
		}
		if line, err = os.ReadFile(ready); err == nil && len(line) == 0 {
			err = errors.New("ready file empty")
		}
		return err
	})
	return d, strings.TrimSpace(string(line))
}

// stop interrupts dev as Ctrl-C does and waits for a clean exit.
func (d *devRun) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-d.exited:
		d.exited <- err
		if err != nil {
			t.Errorf("dev after Ctrl-C: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Error("dev did not stop within 60s of Ctrl-C")
	}
}

// killChild SIGKILLs dev's child process whose command line has all of
// words.
func (d *devRun) killChild(t *testing.T, words ...string) {
	t.Helper()
	pid := 0
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", d.cmd.Process.Pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(b)) {
			cmdline, _ := os.ReadFile("/proc/" + field + "/cmdline")
			args := strings.Split(string(cmdline), "\x00")
			if !slices.ContainsFunc(words, func(w string) bool { return !slices.Contains(args, w) }) {
				pid, _ = strconv.Atoi(field)
			}
		}
	}
	if pid == 0 {
		t.Fatalf("no child of dev runs %v", words)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// waitStderr waits until dev's stderr says want.
func (d *devRun) waitStderr(t *testing.T, want string) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		b, err := os.ReadFile(d.stderr)
		if err == nil && !bytes.Contains(b, []byte(want)) {
			err = fmt.Errorf("dev stderr does not say %q yet", want)
		}
		return err
	})
}

// freeBase picks a base port with the five ports a one-node dev cluster
// needs free right now.
func freeBase(t *testing.T) int {
	t.Helper()
	for range 50 {
		addr, err := procs.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(addr)
		base, _ := strconv.Atoi(p)
		free := true
		for port := base; port < base+5 && free; port++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if free = err == nil; free {
				l.Close()
			}
		}
		if free {
			return base
		}
	}
	t.Fatal("no five free ports in a row")
	return 0
}

// TestDevMode: with --base-port the cluster comes back on the same
// ZooKeeper address on every run; a daemon that dies is reported and
// restarted (and serves again), or only reported with --no-restart.
func TestDevMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	base := freeBase(t)
	wantZK := fmt.Sprintf("THUNDER_ZK=127.0.0.1:%d ", base)

	d, export := startDev(t, dir, "--base-port", strconv.Itoa(base))
	if !strings.Contains(export, wantZK) {
		t.Fatalf("export line %q, want %s", export, wantZK)
	}
	zk := fmt.Sprintf("127.0.0.1:%d", base)
	if _, stderr, code := runCLI(t, nil, "--zk", zk, "put", "k", "v"); code != 0 {
		t.Fatalf("put: exit %d: %s", code, stderr)
	}
	d.killChild(t, "serve", "data")
	d.waitStderr(t, `msg="dev cluster: a process exited; restarting it" process=data-g1-1`)
	d.waitStderr(t, `msg="dev cluster: process restarted" process=data-g1-1`)
	eventually(t, 60*time.Second, func() error {
		if out, stderr, code := runCLI(t, nil, "--zk", zk, "get", "k"); code != 0 || out != "v\n" {
			return fmt.Errorf("get after the restart: exit %d, %q, %s", code, out, stderr)
		}
		return nil
	})
	if b, err := os.ReadFile(filepath.Join(dir, "zookeeper", "zookeeper.log")); err != nil || !bytes.Contains(b, []byte("org.apache.zookeeper")) {
		t.Errorf("ZooKeeper's own log is not in the dev directory (%v)", err)
	}
	d.stop(t)

	d, export = startDev(t, dir, "--base-port", strconv.Itoa(base), "--no-restart")
	if !strings.Contains(export, wantZK) {
		t.Fatalf("second run: export line %q, want the same %s", export, wantZK)
	}
	if out, stderr, code := runCLI(t, nil, "--zk", zk, "get", "k"); code != 0 || out != "v\n" {
		t.Errorf("second run: get: exit %d, %q, %s", code, out, stderr)
	}
	d.killChild(t, "serve", "data")
	d.waitStderr(t, `msg="dev cluster: a process exited; not restarting it" process=data-g1-1`)
	d.stop(t)
}
