package datastore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

func newManual(t *testing.T, opts Options) (*Store, string) {
	t.Helper()
	if opts.Slots == 0 {
		opts.Slots = 16
	}
	dir := filepath.Join(t.TempDir(), "s")
	return openManual(t, dir, opts), dir
}

func TestCommittedVisibility(t *testing.T) {
	s, _ := newManual(t, Options{NoSync: true})
	seq := mustPut(t, s, 1, "k", "v1")
	if _, err := s.Get(1, []byte("k")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("uncommitted key visible: %v", err)
	}
	if s.DurableSeq() != seq || s.CommittedSeq() != 0 {
		t.Fatalf("durable %d committed %d", s.DurableSeq(), s.CommittedSeq())
	}
	s.SetCommitted(seq)
	if got := mustGet(t, s, 1, "k"); got != "v1" {
		t.Fatalf("committed key = %q", got)
	}
	seq2 := mustPut(t, s, 1, "k", "v2")
	if got := mustGet(t, s, 1, "k"); got != "v1" {
		t.Fatalf("uncommitted overwrite visible: %q", got)
	}
	// A watermark beyond the durable seq is remembered and followed.
	s.SetCommitted(seq2 + 5)
	if s.CommittedSeq() != seq2 {
		t.Fatalf("committed %d, want durable %d", s.CommittedSeq(), seq2)
	}
	seq3 := mustPut(t, s, 1, "k", "v3")
	if s.CommittedSeq() != seq3 || mustGet(t, s, 1, "k") != "v3" {
		t.Fatalf("committed %d after write %d", s.CommittedSeq(), seq3)
	}
	s.SetCommitted(1) // never goes back
	if s.CommittedSeq() != seq3 {
		t.Fatalf("committed went back to %d", s.CommittedSeq())
	}
	waitApplied(t, s)
	if kvs, err := s.Scan(testCtx(t), []int{1}, nil, nil, 0); err != nil || len(kvs) != 1 || string(kvs[0].Value) != "v3" {
		t.Fatalf("scan = %v, %v", kvs, err)
	}
}

func TestReadLogBeforeFsync(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	synced := make(chan struct{}, 1)
	hooksOn := make(chan struct{})
	opts := Options{NoSync: true, hooks: hooks{beforeSync: func() {
		select {
		case <-hooksOn:
			once.Do(func() { synced <- struct{}{}; <-release })
		default:
		}
	}}}
	s, _ := newManual(t, opts)
	close(hooksOn)
	ctx := testCtx(t)
	done := make(chan error, 1)
	go func() {
		_, err := s.Write(ctx, []Mutation{{Slot: 2, Key: []byte("a"), Value: []byte("b")}})
		done <- err
	}()
	if err := s.WaitLog(ctx, 0); err != nil {
		t.Fatal(err)
	}
	<-synced
	entries, err := s.ReadLog(1, 0)
	if err != nil || len(entries) != 1 || string(entries[0].Key) != "a" {
		t.Fatalf("read log before fsync: %v, %v", entries, err)
	}
	if s.DurableSeq() != 0 || s.LastSeq() != 1 {
		t.Fatalf("durable %d last %d while fsync is held", s.DurableSeq(), s.LastSeq())
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.DurableSeq() != 1 {
		t.Fatalf("durable %d after write", s.DurableSeq())
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := s.WaitLog(wctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitLog past the end: %v", err)
	}
}

func TestTruncateAfter(t *testing.T) {
	s, dir := newManual(t, Options{NoSync: true, segmentSize: 200})
	ctx := testCtx(t)
	for i := range 10 {
		mustPut(t, s, 3, fmt.Sprintf("k%d", i), "old")
	}
	s.SetCommitted(4)
	if err := s.SetEpoch(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.TruncateAfter(ctx, 3); !errors.Is(err, ErrTruncateCommitted) {
		t.Fatalf("truncate below committed: %v", err)
	}
	if err := s.TruncateAfter(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if s.LastSeq() != 6 || s.DurableSeq() != 6 {
		t.Fatalf("after truncate: last %d durable %d", s.LastSeq(), s.DurableSeq())
	}
	if want := []EpochStart{{0, 1}, {2, 7}}; !slices.Equal(s.Epochs(), want) || s.Epoch() != 2 {
		t.Fatalf("epochs %v epoch %d, want %v", s.Epochs(), s.Epoch(), want)
	}
	entries, err := s.ReadLog(1, 0)
	if err != nil || len(entries) != 6 {
		t.Fatalf("log after truncate: %d entries, %v", len(entries), err)
	}
	// New entries continue at 7; the truncated versions are gone.
	if err := s.ApplyLog(ctx, []LogEntry{{Seq: 7, Epoch: 2, Slot: 3, Key: []byte("k9"), Value: []byte("new")}}); err != nil {
		t.Fatal(err)
	}
	s.SetCommitted(7)
	if _, err := s.Get(3, []byte("k7")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("truncated key: %v", err)
	}
	if got := mustGet(t, s, 3, "k9"); got != "new" {
		t.Fatalf("k9 = %q", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openManual(t, dir, Options{})
	if s.LastSeq() != 7 || !slices.Equal(s.Epochs(), []EpochStart{{0, 1}, {2, 7}}) {
		t.Fatalf("after reopen: last %d epochs %v", s.LastSeq(), s.Epochs())
	}
	s.SetCommitted(7)
	if got := mustGet(t, s, 3, "k9"); got != "new" {
		t.Fatalf("k9 after reopen = %q", got)
	}
	if _, err := s.Get(3, []byte("k8")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("truncated key after reopen: %v", err)
	}
}

func TestSnapshotRestore(t *testing.T) {
	primary, _ := newStore(t, Options{NoSync: true})
	follower, fdir := newManual(t, Options{NoSync: true})
	ctx := testCtx(t)
	mustPut(t, follower, 0, "stale", "x") // discarded by the restore
	if err := primary.SetEpoch(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		mustPut(t, primary, i%16, fmt.Sprintf("k%02d", i), fmt.Sprint(i))
	}
	r, err := follower.Restore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := follower.Write(ctx, []Mutation{{Slot: 1, Key: []byte("x")}}); !errors.Is(err, ErrRestoring) {
		t.Fatalf("write during restore: %v", err)
	}
	if _, err := follower.Restore(ctx); !errors.Is(err, ErrRestoring) {
		t.Fatalf("second restore: %v", err)
	}
	all := make([]int, 16)
	for i := range all {
		all[i] = i
	}
	seq, err := primary.Snapshot(ctx, all, func(slot int, key, value []byte) error { return r.Put(slot, key, value) })
	if err != nil || seq != 30 {
		t.Fatalf("snapshot = %d, %v", seq, err)
	}
	if err := r.Finish(seq, primary.Epochs()); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(0, []byte("late"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after finish: %v", err)
	}
	if follower.LastSeq() != 30 || follower.CommittedSeq() != 30 || follower.AppliedSeq() != 30 {
		t.Fatalf("follower at %d/%d/%d", follower.LastSeq(), follower.CommittedSeq(), follower.AppliedSeq())
	}
	if _, err := follower.ReadLog(30, 0); !errors.Is(err, ErrLogTrimmed) {
		t.Fatalf("read log before the restore point: %v", err)
	}
	// The rest of the primary's log continues it.
	mustPut(t, primary, 5, "after", "snap")
	entries, err := primary.ReadLog(seq+1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.ApplyLog(ctx, entries); err != nil {
		t.Fatal(err)
	}
	follower.SetCommitted(follower.LastSeq())
	waitApplied(t, primary)
	if a, b := dump(t, primary), dump(t, follower); !reflect.DeepEqual(a, b) {
		t.Fatalf("data differs:\n%v\n%v", a, b)
	}
	if !slices.Equal(follower.Epochs(), primary.Epochs()) || follower.Epoch() != 3 {
		t.Fatalf("epochs %v vs %v", follower.Epochs(), primary.Epochs())
	}
	if err := follower.Close(); err != nil {
		t.Fatal(err)
	}
	follower = openManual(t, fdir, Options{})
	if follower.LastSeq() != 31 {
		t.Fatalf("after reopen last %d", follower.LastSeq())
	}
	follower.SetCommitted(31)
	if a, b := dump(t, primary), dump(t, follower); !reflect.DeepEqual(a, b) {
		t.Fatal("data differs after reopen")
	}
}

func TestRestoreAbort(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	mustPut(t, s, 0, "a", "1")
	r, err := s.Restore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Put(0, []byte("b"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := r.Abort(); err != nil {
		t.Fatal(err)
	}
	if s.LastSeq() != 0 || len(dump(t, s)) != 0 {
		t.Fatalf("after abort: last %d, data %v", s.LastSeq(), dump(t, s))
	}
	if seq := mustPut(t, s, 0, "c", "3"); seq != 1 {
		t.Fatalf("first seq after abort %d", seq)
	}
}

func TestScanWithLaggingApplier(t *testing.T) {
	var mu sync.Mutex
	opts := Options{NoSync: true, hooks: hooks{beforeApply: func() {
		mu.Lock() // held by the test while the applier must lag
		defer mu.Unlock()
	}}}
	s, _ := newStore(t, opts)
	mu.Lock()
	muts := make([]Mutation, 0, 100)
	for i := range 2000 {
		muts = append(muts, Mutation{Slot: i % 16, Key: fmt.Appendf(nil, "k%05d", i), Value: []byte("v")})
		if len(muts) == cap(muts) {
			if _, err := s.Write(testCtx(t), muts); err != nil {
				t.Fatal(err)
			}
			muts = muts[:0]
		}
	}
	if s.AppliedSeq() != 0 {
		t.Fatalf("applier ran: applied %d", s.AppliedSeq())
	}
	// Gets are served from the overlay without waiting.
	if got := mustGet(t, s, 7, "k01991"); got != "v" {
		t.Fatalf("get = %q", got)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Scan(ctx, []int{0}, nil, nil, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("scan with the applier held: %v", err)
	}
	mu.Unlock()
	kvs, err := s.Scan(testCtx(t), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, nil, nil, 0)
	if err != nil || len(kvs) != 2000 {
		t.Fatalf("scan = %d pairs, %v", len(kvs), err)
	}
}

func TestBackpressure(t *testing.T) {
	s, _ := newManual(t, Options{NoSync: true, overlayLimit: 1000})
	ctx := testCtx(t)
	seq := mustPut(t, s, 0, "a", string(make([]byte, 2000)))
	// The overlay is over its limit and nothing is committed: writes wait.
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.Write(wctx, []Mutation{{Slot: 0, Key: []byte("b")}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write over the overlay limit: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Write(ctx, []Mutation{{Slot: 0, Key: []byte("c")}})
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	s.SetCommitted(seq) // the applier drains the overlay, the writer proceeds
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLogTrimming(t *testing.T) {
	s, dir := newStore(t, Options{NoSync: true, LogRetention: 10, segmentSize: 300, tailBytes: 1})
	for i := range 100 {
		mustPut(t, s, 0, fmt.Sprintf("%03d", i), "value")
		waitApplied(t, s)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.FirstLogSeq < 60 || st.FirstLogSeq > 91 || st.LastSeq != 100 || st.WALBytes <= 0 || st.AppliedSeq != 100 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := s.ReadLog(st.FirstLogSeq-1, 0); !errors.Is(err, ErrLogTrimmed) {
		t.Fatalf("read trimmed: %v", err)
	}
	// Old entries come from the segment files (the tail keeps almost nothing).
	entries, err := s.ReadLog(st.FirstLogSeq, 0)
	if err != nil || len(entries) != int(101-st.FirstLogSeq) || entries[len(entries)-1].Seq != 100 {
		t.Fatalf("read kept: %d entries, %v", len(entries), err)
	}
	if entries, err := s.ReadLog(95, 3); err != nil || len(entries) != 3 || entries[0].Seq != 95 || string(entries[0].Key) != "094" {
		t.Fatalf("read 95..97: %v, %v", entries, err)
	}
	if entries, err := s.ReadLog(101, 0); err != nil || len(entries) != 0 {
		t.Fatalf("read past the end: %v, %v", entries, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{LogRetention: 10, segmentSize: 300})
	if s.LastSeq() != 100 || mustGet(t, s, 0, "099") != "value" {
		t.Fatalf("after reopen last %d", s.LastSeq())
	}
}

func TestFailStop(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	mustPut(t, s, 0, "a", "1")
	// Closing the log file under the committer makes its next write fail.
	if err := s.wal.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if _, err := s.Write(ctx, []Mutation{{Slot: 0, Key: []byte("b")}}); !errors.Is(err, ErrFailed) {
		t.Fatalf("write on a failed log: %v", err)
	}
	if _, err := s.Write(ctx, []Mutation{{Slot: 0, Key: []byte("c")}}); !errors.Is(err, ErrFailed) {
		t.Fatalf("later write: %v", err)
	}
	if err := s.SetEpoch(ctx, 9); !errors.Is(err, ErrFailed) {
		t.Fatalf("set epoch: %v", err)
	}
	if got := mustGet(t, s, 0, "a"); got != "1" {
		t.Fatalf("reads still work: %q", got)
	}
	s.wal = nil // already closed; Close must not fail on it
}
