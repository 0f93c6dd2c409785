package procs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/daemon/procs"
)

// waitLog waits until log holds n lines of want.
func waitLog(t *testing.T, log, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(log)
		if strings.Count(string(b), want+"\n") >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %q: want %d lines %q", b, n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartStopKillRestart(t *testing.T) {
	log := filepath.Join(t.TempDir(), "p.log")
	// Says hello, and ignores nothing: SIGTERM ends it.
	p, err := procs.Start("p", "/bin/sh", []string{"-c", "echo hello; exec sleep 60"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	waitLog(t, log, "hello", 1)
	if p.ExitState() != "" {
		t.Fatal("exit state of a running process")
	}
	if err := p.Restart(); err == nil {
		t.Fatal("restarted a running process")
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.ExitState(), "terminated") {
		t.Fatalf("exit state after SIGTERM: %q", p.ExitState())
	}
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, "hello", 2) // the log is appended to, not replaced
	p.Kill()
	if !strings.Contains(p.ExitState(), "killed") {
		t.Fatalf("exit state after SIGKILL: %q", p.ExitState())
	}
}

func TestStopKillsAProcessThatIgnoresSIGTERM(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	p, err := procs.Start("stubborn", "/bin/sh", []string{"-c", "trap '' TERM; echo ready; while :; do sleep 1; done"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	waitLog(t, log, "ready", 1)
	if err := p.Stop(300 * time.Millisecond); err == nil {
		t.Fatal("Stop reported a clean stop of a process that ignores SIGTERM")
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("the process still runs after Stop")
	}
}
