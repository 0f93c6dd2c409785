package datanode

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/internal/poll"
)

// The copy stream's throttle paces what it lets through at its rate, and
// an unbounded one never waits.
func TestThrottlePaces(t *testing.T) {
	ctx := context.Background()
	th := throttle{bytesPerSec: 1e6}
	start := time.Now()
	for range 4 {
		if err := th.wait(ctx, 100_000); err != nil {
			t.Fatal(err)
		}
	}
	// 400 kB at 1 MB/s: at least 0.4 s, whatever the machine's load.
	if took := time.Since(start); took < 350*time.Millisecond {
		t.Fatalf("400 kB passed a 1 MB/s throttle in %s", took)
	}
	free := throttle{}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := free.wait(cctx, 1<<30); err != nil {
		t.Fatalf("unbounded throttle waited: %v", err)
	}
}

// A target reports the import position its store has applied, not the one
// it received and committed: what the applier has yet to do counts as lag.
// The pacer applies what it is asked to without the applier's batching
// delay, and a drop forgets every position.
func TestAppliedImportPositions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	store, err := datastore.Open(filepath.Join(t.TempDir(), "s"), datastore.Options{Slots: 4, AutoCommit: true, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	var ip importPositions
	if through, ok := ip.appliedAt(store.AppliedSeq()); ok {
		t.Fatalf("a position (%d) before any import", through)
	}
	// write commits one batch of the import bringing it to through, as the
	// importer's settle records it.
	write := func(key string, through uint64) uint64 {
		t.Helper()
		seq, err := store.Write(ctx, []datastore.Mutation{{Slot: 1, Key: []byte(key), Value: []byte("v")}, markMutation("m1", through, true)})
		if err != nil {
			t.Fatal(err)
		}
		ip.committed(seq, through)
		return seq
	}
	want := func(what string, through uint64, ok bool) {
		t.Helper()
		if got, gotOK := ip.appliedAt(store.AppliedSeq()); got != through || gotOK != ok {
			t.Fatalf("%s: applied position %d (%v), want %d (%v)", what, got, gotOK, through, ok)
		}
	}

	first := write("a", 500)
	// The applier waits seconds for a larger batch: received, not applied.
	want("received", 0, false)
	if err := store.ApplyThrough(ctx, first); err != nil {
		t.Fatal(err)
	}
	want("applied", 500, true)

	second := write("b", 700)
	want("second received", 500, true)
	pacer := newApplyPacer()
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); pacer.run(pctx, func() *datastore.Store { return store }) }()
	pacer.ask(second-1, false)
	pacer.ask(second, true) // replaces the ask not yet taken, or follows it at once
	poll.Until(t, 10*time.Second, "the pacer applies the second batch", func() bool { return store.AppliedSeq() >= second })
	stop()
	<-done
	want("second applied", 700, true)

	ip.reset()
	want("after a drop", 0, false)
}

// The importer's receive window lets messages through while their bytes
// fit, holds the next until enough are given back, passes a message larger
// than the window when it is empty, and gives up when its context ends.
func TestAheadWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := newAheadWindow(100)
	for _, n := range []int{60, 40, 0} {
		if err := w.take(ctx, n); err != nil {
			t.Fatalf("take %d of a window holding %d: %v", n, w.held.Load(), err)
		}
	}
	took := make(chan error, 1)
	go func() { took <- w.take(ctx, 50) }()
	select {
	case err := <-took:
		t.Fatalf("took 50 bytes into a full window (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	w.give(40) // 60 held: 50 more do not fit yet
	select {
	case err := <-took:
		t.Fatalf("took 50 bytes next to 60 in a window of 100 (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	w.give(60)
	if err := <-took; err != nil {
		t.Fatal(err)
	}
	w.give(50)
	if err := w.take(ctx, 1000); err != nil {
		t.Fatalf("an empty window refused a large message: %v", err)
	}
	cctx, stop := context.WithCancel(ctx)
	stop()
	if err := w.take(cctx, 1); err == nil {
		t.Fatal("a full window took a message after its context ended")
	}
}
