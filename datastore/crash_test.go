package datastore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashEnv names the store path the child process writes to.
const crashEnv = "DATASTORE_CRASH_CHILD_PATH"

// TestCrashChild is the child side of TestCrashRecovery: it writes keys
// from several goroutines with real fsync and prints "ACK seq goroutine i"
// after each acknowledged write, until it is killed (or 20 s pass).
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("only run as the child of TestCrashRecovery")
	}
	s, err := Open(path, Options{Slots: 8, AutoCommit: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Appendf(nil, "g%d-%d", g, i)
				seq, err := s.Write(ctx, []Mutation{{Slot: g, Key: key, Value: key}})
				if err != nil {
					return
				}
				mu.Lock()
				fmt.Fprintf(out, "ACK %d %d %d\n", seq, g, i)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

func TestCrashRecovery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	const killAfter = 1000
	type ack struct{ seq, g, i int }
	var acks []ack
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var a ack
		if _, err := fmt.Sscanf(sc.Text(), "ACK %d %d %d", &a.seq, &a.g, &a.i); err != nil {
			continue
		}
		acks = append(acks, a)
		if len(acks) == killAfter {
			// Mid-stream: the child keeps committing while it dies.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = cmd.Wait()
	if len(acks) < killAfter {
		t.Fatalf("child acknowledged only %d writes before it ended", len(acks))
	}

	s := openStore(t, path, Options{})
	maxSeq, seen := 0, make(map[int]bool)
	for _, a := range acks {
		if seen[a.seq] {
			t.Fatalf("seq %d acknowledged twice", a.seq)
		}
		seen[a.seq] = true
		maxSeq = max(maxSeq, a.seq)
		key := fmt.Sprintf("g%d-%d", a.g, a.i)
		if got := mustGet(t, s, a.g, key); got != key {
			t.Fatalf("acknowledged key %s has value %q", key, got)
		}
	}
	if s.LastSeq() < uint64(maxSeq) {
		t.Fatalf("LastSeq %d after reopen, but seq %d was acknowledged", s.LastSeq(), maxSeq)
	}
	next := mustPut(t, s, 0, "after-crash", "v")
	if next != s.LastSeq() || next <= uint64(maxSeq) {
		t.Fatalf("seq after reopen %d, acknowledged up to %d", next, maxSeq)
	}
	entries, err := s.ReadLog(1, Limit{})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		if e.Seq != uint64(i+1) {
			t.Fatalf("log entry %d has seq %d", i, e.Seq)
		}
	}
	t.Logf("%d acknowledged before SIGKILL (max seq %d), %d found in the log", len(acks), maxSeq, len(entries)-1)
	// The replayed log reaches the slot digests as it reaches the keys.
	waitApplied(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Verify(path); err != nil {
		t.Fatal(err)
	}
}
