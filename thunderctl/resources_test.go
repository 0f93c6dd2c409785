package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/daemon/procs"
)

// rssBudget is how much a data node's resident memory may grow over its
// idle size while hostile peers connect to it.
const rssBudget = 200 << 20

// TestDataNodeBoundsHostilePeers points hostile peers at a data node: 16
// raw connections that each send a frame header claiming 1 GiB and push
// data after it, then 5,000 connections that send nothing. The node's
// resident memory stays under its idle size plus 200 MB, every one of
// those connections is closed by the node (at the header, or by its
// handshake timeout), and the node serves clients afterwards.
func TestDataNodeBoundsHostilePeers(t *testing.T) {
	const idleConns = 5000
	raiseFileLimit(t, idleConns+1000)
	// The plain build: the race detector's own memory per goroutine would
	// dwarf the node's.
	tc := newTestCluster(t)
	tc.coordinator("coord-1")
	addr, err := procs.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	node := tc.replicaWith(thunderctlBin, addr, "data-1")
	cl := tc.coordCluster()
	tc.waitServing(cl, 30*time.Second)
	pid := pidOf(t, node)
	c := tc.client(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range 200 {
		if err := c.Put(ctx, []byte(fmt.Sprintf("warm-%d", i)), bytes.Repeat([]byte("v"), 1000)); err != nil {
			t.Fatal(err)
		}
	}
	idle := procStatus(t, pid, "VmRSS")
	t.Logf("data node pid %d: idle RSS %d MiB", pid, idle>>20)

	// 16 peers claim 1 GiB frames and push 8 MiB each after the claim.
	const claims, pushed = 16, 8 << 20
	// An invoke frame (kind 1, last of its message) of stream 1, message
	// 1, claiming 1 GiB: control byte, then varints.
	claim := binary.AppendUvarint(binary.AppendUvarint(binary.AppendUvarint([]byte{1<<1 | 1}, 1), 1), 1<<30)
	var wg sync.WaitGroup
	var open atomic.Int32
	for range claims {
		raw, err := net.DialTimeout("tcp", node.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = raw.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_, _ = raw.Write(append(claim, make([]byte, pushed)...))
			if !closedByPeer(raw, 20*time.Second) {
				open.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := open.Load(); n > 0 {
		t.Errorf("%d of %d connections claiming 1 GiB frames are still open after 20 s", n, claims)
	}
	peak := procStatus(t, pid, "VmHWM")
	t.Logf("after %d claims of 1 GiB: peak RSS %d MiB (idle %d MiB)", claims, peak>>20, idle>>20)
	if peak > idle+rssBudget {
		t.Errorf("peak RSS %d MiB, want under idle %d MiB + %d MiB", peak>>20, idle>>20, rssBudget>>20)
	}

	// 5,000 peers connect and send nothing.
	conns := make(chan net.Conn, idleConns)
	var dialErrs atomic.Int32
	for w := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < idleConns; i += 50 {
				raw, err := net.DialTimeout("tcp", node.addr, 10*time.Second)
				if err != nil {
					dialErrs.Add(1)
					continue
				}
				conns <- raw
			}
		}()
	}
	wg.Wait()
	close(conns)
	opened := time.Now()
	var held []net.Conn
	for raw := range conns {
		held = append(held, raw)
	}
	t.Cleanup(func() {
		for _, raw := range held {
			raw.Close()
		}
	})
	t.Logf("%d idle connections opened (%d dials failed); RSS now %d MiB", len(held), dialErrs.Load(), procStatus(t, pid, "VmRSS")>>20)
	// Every one must be closed by the node's handshake timeout (or at once,
	// past its connection limit); none is closed by this side.
	const patience = 45 * time.Second
	var stillOpen atomic.Int32
	for _, raw := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !closedByPeer(raw, time.Until(opened.Add(patience))) {
				stillOpen.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("the node closed %d of %d idle connections within %s", len(held)-int(stillOpen.Load()), len(held), patience)
	if n := stillOpen.Load(); n > 0 {
		t.Errorf("%d idle connections still open after %s", n, patience)
	}
	peak = procStatus(t, pid, "VmHWM")
	t.Logf("peak RSS %d MiB (idle %d MiB)", peak>>20, idle>>20)
	if peak > idle+rssBudget {
		t.Errorf("peak RSS %d MiB, want under idle %d MiB + %d MiB", peak>>20, idle>>20, rssBudget>>20)
	}

	// The node still serves.
	eventually(t, 30*time.Second, func() error {
		if err := c.Put(ctx, []byte("after"), []byte("ok")); err != nil {
			return err
		}
		if v, err := c.Get(ctx, []byte("warm-7")); err != nil || len(v) != 1000 {
			return fmt.Errorf("get warm-7: %d bytes, %v", len(v), err)
		}
		return nil
	})
	if st := node.ExitState(); st != "" {
		t.Fatalf("the data node exited: %s", st)
	}
}

// closedByPeer reads from raw until the peer closes it (true) or within
// passes (false).
func closedByPeer(raw net.Conn, within time.Duration) bool {
	_ = raw.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 4096)
	for {
		if _, err := raw.Read(buf); err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// raiseFileLimit lets the test process open n files, or skips the test.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if lim.Cur >= n {
		return
	}
	want := syscall.Rlimit{Cur: n, Max: max(lim.Max, n)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		t.Skipf("cannot raise RLIMIT_NOFILE to %d (limit %d/%d): %v", n, lim.Cur, lim.Max, err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
}

// pidOf finds the process id of a daemon started by the harness: the one
// whose command line names its data directory.
func pidOf(t *testing.T, p *proc) int {
	t.Helper()
	want := []byte("\x00" + p.dir + "\x00")
	var pid int
	eventually(t, 10*time.Second, func() error {
		dirs, err := filepath.Glob("/proc/[0-9]*")
		if err != nil {
			return err
		}
		for _, d := range dirs {
			b, err := os.ReadFile(filepath.Join(d, "cmdline"))
			if err == nil && bytes.Contains(b, want) && bytes.Contains(b, []byte("serve\x00data")) {
				pid, _ = strconv.Atoi(filepath.Base(d))
				return nil
			}
		}
		return fmt.Errorf("no process serves %s", p.dir)
	})
	return pid
}

// procStatus reads a memory field of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s in /proc/%d/status: %v", field, pid, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
