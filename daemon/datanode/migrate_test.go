package datanode

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/internal/poll"
	"github.com/thunderyurts/thunderyurts/wire"
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

// A source paces its snapshot only while its group's watermark moves
// between chunks (its clients write), and then at the busy rate.
func TestBusyPace(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a wait that must sleep fails at once
	b := busyPace{throttle: throttle{bytesPerSec: 1e6}}
	for i, step := range []struct {
		committed uint64
		paced     bool
	}{
		{10, false}, // the first chunk: nothing to compare with
		{10, false}, // no client wrote
		{11, true},  // one did: 1 MB at 1 MB/s waits
		{11, false},
	} {
		err := b.wait(ctx, step.committed, 1e6)
		if paced := err != nil; paced != step.paced {
			t.Fatalf("chunk %d at watermark %d: paced %v (%v); want %v", i, step.committed, paced, err, step.paced)
		}
	}
}

// A target reports the import position its store has applied, not the one
// it received and committed: what the applier has yet to do counts as lag.
// The pacer applies what it is asked to without the applier's batching
// delay, and a drop forgets every position.
func TestAppliedImportPositions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	store := smallStore(t)
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
	if err := store.ApplyThrough(ctx, first, false); err != nil {
		t.Fatal(err)
	}
	want("applied", 500, true)

	second := write("b", 700)
	want("second received", 500, true)
	if through, ok := ip.at(second); through != 700 || !ok {
		t.Fatalf("committed position %d (%v), want 700", through, ok)
	}
	want("second received, its committed position read", 500, true)
	pacer, stop := startPacer(ctx, store)
	pacer.ask(second-1, false, true)
	pacer.ask(second, true, true) // replaces the ask not yet taken, or follows it at once
	poll.Until(t, 10*time.Second, "the pacer applies the second batch", func() bool { return store.AppliedSeq() >= second })
	stop()
	want("second applied", 700, true)
	// A view of the store older than the position known applied (digests
	// read while the applier passed it) gets none: not that newer one.
	if through, ok := ip.at(first); ok {
		t.Fatalf("position %d at seq %d, older than the applied one", through, first)
	}

	ip.reset()
	want("after a drop", 0, false)
}

// While the group's clients write, the pacer spaces its rounds
// busyApplyEvery apart (each applies their random writes too), and an
// urgent ask, a caught-up copy's, still gets a round at once.
func TestApplyPacerBusy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	store := smallStore(t)
	write := func(key string) uint64 {
		t.Helper()
		seq, err := store.Write(ctx, []datastore.Mutation{{Slot: 1, Key: []byte(key), Value: []byte("v")}})
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	pacer, stop := startPacer(ctx, store)
	defer stop()

	first := write("a")
	pacer.ask(first, false, true) // the first round comes at once
	poll.Until(t, 10*time.Second, "the pacer's first round", func() bool { return store.AppliedSeq() >= first })
	asked := time.Now()
	second := write("b")
	pacer.ask(second, false, true)
	// The applier's own batching delay is seconds longer than this wait:
	// only the pacer could apply the write, and its pause is not over.
	time.Sleep(300 * time.Millisecond)
	if applied := store.AppliedSeq(); applied >= second && time.Since(asked) < busyApplyEvery/2 {
		t.Fatalf("a busy pacer made its next round within %s of the one before", time.Since(asked))
	}
	pacer.ask(second, true, true)
	poll.Until(t, 10*time.Second, "the urgent round", func() bool { return store.AppliedSeq() >= second })
}

// smallStore opens a store of 4 slots that commits without fsync; the
// test closes it.
func smallStore(t *testing.T) *datastore.Store {
	t.Helper()
	store, err := datastore.Open(filepath.Join(t.TempDir(), "s"), datastore.Options{Slots: 4, AutoCommit: true, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return store
}

// startPacer runs an apply pacer on store until stop, which returns once
// the pacer did.
func startPacer(ctx context.Context, store *datastore.Store) (_ *applyPacer, stop func()) {
	pacer := newApplyPacer()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); pacer.run(ctx, func() *datastore.Store { return store }) }()
	return pacer, func() { cancel(); <-done }
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

// The importer writes the log records and positions already received
// behind one another as one write, up to importBatch records, and stops
// at what it cannot add: part of a snapshot or the stream's error.
func TestGatherLog(t *testing.T) {
	entries := func(n int) *wire.MigrateMessage {
		return &wire.MigrateMessage{Body: &wire.MigrateMessage_Entries{Entries: &wire.MigrateEntries{Records: make([]*wire.LogEntry, n)}}}
	}
	position := &wire.MigrateMessage{Body: &wire.MigrateMessage_Position{Position: &wire.MigratePosition{Through: 9}}}
	chunk := &wire.MigrateMessage{Body: &wire.MigrateMessage_SnapshotChunk{SnapshotChunk: &wire.SnapshotChunk{}}}
	queue := func(rs ...received) chan received {
		ch := make(chan received, len(rs))
		for _, r := range rs {
			ch <- r
		}
		return ch
	}
	for _, tc := range []struct {
		name  string
		first *wire.MigrateMessage
		queue []received
		batch int  // messages in the write
		held  bool // a message taken but left out
		left  int  // messages still queued
	}{
		{"records and positions", entries(3), []received{{msg: position}, {msg: entries(2)}}, 3, false, 0},
		{"up to a snapshot chunk", position, []received{{msg: entries(1)}, {msg: chunk}, {msg: entries(1)}}, 2, true, 1},
		{"up to the stream's error", entries(1), []received{{err: errors.New("gone")}}, 1, true, 0},
		{"a snapshot chunk alone", chunk, []received{{msg: entries(1)}}, 1, false, 1},
		{"up to importBatch records", entries(importBatch - 10), []received{{msg: entries(10)}, {msg: entries(1)}}, 2, false, 1},
	} {
		ch := queue(tc.queue...)
		batch, held := gatherLog([]*wire.MigrateMessage{tc.first}, ch, newAheadWindow(1<<20))
		if len(batch) != tc.batch || (held != nil) != tc.held || len(ch) != tc.left {
			t.Errorf("%s: a batch of %d, held %v, %d left; want %d, %v, %d", tc.name, len(batch), held != nil, len(ch), tc.batch, tc.held, tc.left)
		}
	}
}

// The import shares the log once other writes come between two of its
// writes, and takes its snapshot in smaller batches until they stop.
func TestLogShare(t *testing.T) {
	var l logShare
	for _, step := range []struct {
		first, last uint64
		shared      bool
	}{
		{5, 9, false},   // its first write: nothing to compare with
		{10, 20, false}, // right after its own
		{23, 30, true},  // two client entries came between
		{31, 31, false}, // alone again
		{40, 100, true},
	} {
		if got := l.wrote(step.first, step.last); got != step.shared {
			t.Fatalf("write %d..%d: shared %v; want %v", step.first, step.last, got, step.shared)
		}
		want := importBatch
		if step.shared {
			want = sharedImportBatch
		}
		if got := l.snapshotBatch(); got != want {
			t.Fatalf("after write %d..%d: a snapshot batch of %d records; want %d", step.first, step.last, got, want)
		}
	}
}

// A target reports its snapshot done only once it heard the source's
// watermark: before, a zero watermark read as no lag, and the coordinator
// held while the log of the copy's whole time was still to come.
func TestImportReportWaitsForWatermark(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := &Node{}
	store := smallStore(t)
	n.db.Store(store)
	imp := &importer{n: n, m: coord.Migration{ID: "m1", First: 1, Last: 1}}
	seq, err := store.Write(ctx, []datastore.Mutation{{Slot: 1, Key: []byte("k"), Value: []byte("v")}, markMutation("m1", 40, true)})
	if err != nil {
		t.Fatal(err)
	}
	imp.positions.committed(seq, 40)
	imp.snapshotOK.Store(true) // settle saw the snapshot's end committed
	if err := store.ApplyThrough(ctx, seq, true); err != nil {
		t.Fatal(err)
	}
	var r wire.MigrationStatus
	imp.report(ctx, &r, false)
	if r.SnapshotDone || r.ImportedSeq != 40 {
		t.Fatalf("before any position: snapshot done %v, imported %d; want not done, 40", r.SnapshotDone, r.ImportedSeq)
	}
	through, ended := uint64(40), true
	position := &wire.MigrateMessage{Body: &wire.MigrateMessage_Position{Position: &wire.MigratePosition{Committed: 900}}}
	if w, err := imp.write(ctx, []*wire.MigrateMessage{position}, &through, &ended); w != nil || err != nil {
		t.Fatalf("a position behind the import wrote %v, %v", w, err)
	}
	imp.report(ctx, &r, false)
	if !r.SnapshotDone || r.SourceCommitted-r.ImportedSeq != 860 {
		t.Fatalf("after a position: snapshot done %v, lag %d; want done, 860", r.SnapshotDone, r.SourceCommitted-r.ImportedSeq)
	}
}
