package datastore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestReadLogApplyLogRoundTrip(t *testing.T) {
	primary, _ := newStore(t, Options{NoSync: true})
	follower, _ := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	for i := range 40 {
		mustPut(t, primary, i%16, fmt.Sprintf("k%d", i%25), fmt.Sprint(i))
	}
	if err := primary.SetEpoch(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := primary.Write(ctx, []Mutation{
		{Slot: 3, Key: []byte("k3"), Delete: true},
		{Slot: 4, Key: []byte{0, 0xff}, Value: []byte{}},
	}); err != nil {
		t.Fatal(err)
	}

	for from := uint64(1); from <= primary.LastSeq(); {
		entries, err := primary.ReadLog(from, Limit{Entries: 7})
		if err != nil {
			t.Fatal(err)
		}
		if err := follower.ApplyLog(ctx, entries); err != nil {
			t.Fatalf("apply from %d: %v", from, err)
		}
		from += uint64(len(entries))
	}
	if follower.LastSeq() != primary.LastSeq() || follower.Epoch() != 2 {
		t.Fatalf("follower at seq %d epoch %d, primary at %d", follower.LastSeq(), follower.Epoch(), primary.LastSeq())
	}
	if !slices.Equal(follower.Epochs(), primary.Epochs()) {
		t.Fatalf("epoch maps differ: %v vs %v", follower.Epochs(), primary.Epochs())
	}
	if a, b := dump(t, primary), dump(t, follower); !reflect.DeepEqual(a, b) {
		t.Fatalf("data differs:\n%v\n%v", a, b)
	}
	pl, _ := primary.ReadLog(0, Limit{})
	fl, _ := follower.ReadLog(0, Limit{})
	if !reflect.DeepEqual(pl, fl) {
		t.Fatal("logs differ")
	}

	// Entries already applied, and entries beyond a gap, are refused.
	if err := follower.ApplyLog(ctx, pl[len(pl)-2:]); !errors.Is(err, ErrLogGap) {
		t.Fatalf("re-apply: %v", err)
	}
	next := LogEntry{Seq: follower.LastSeq() + 2, Epoch: 2, Slot: 1, Key: []byte("x")}
	if err := follower.ApplyLog(ctx, []LogEntry{next}); !errors.Is(err, ErrLogGap) {
		t.Fatalf("gap: %v", err)
	}
	next.Seq--
	gapInside := []LogEntry{next, next}
	if err := follower.ApplyLog(ctx, gapInside); !errors.Is(err, ErrLogGap) {
		t.Fatalf("gap inside a call: %v", err)
	}
	old := next
	old.Epoch = 1
	if err := follower.ApplyLog(ctx, []LogEntry{old}); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("entry from an older epoch than the log's last: %v", err)
	}
	bad := next
	bad.Slot = 16
	if err := follower.ApplyLog(ctx, []LogEntry{bad}); !errors.Is(err, ErrBadSlot) {
		t.Fatalf("bad slot: %v", err)
	}
	if follower.LastSeq() != primary.LastSeq() {
		t.Fatal("refused ApplyLog calls moved LastSeq")
	}
	if err := follower.ApplyLog(ctx, []LogEntry{next}); err != nil {
		t.Fatalf("continuing entry: %v", err)
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
	entries, err := s.ReadLog(1, Limit{})
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
	entries, err := s.ReadLog(1, Limit{})
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

func TestLogTrimming(t *testing.T) {
	s, dir := newStore(t, Options{NoSync: true, LogRetention: 10, segmentSize: 300, tailBytes: 1})
	for i := range 100 {
		mustPut(t, s, 0, fmt.Sprintf("%03d", i), "value")
		waitApplied(t, s)
	}
	// The last round trims the log after it publishes the applied seq:
	// hold the applier so that the reads below see its trim done.
	holdApplier(t, s)
	held := true
	defer func() {
		if held { // a failed check: let the store close
			s.applyMu.Unlock()
		}
	}()
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.FirstLogSeq < 60 || st.FirstLogSeq > 91 || st.LastSeq != 100 || st.WALBytes <= 0 || st.AppliedSeq != 100 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := s.ReadLog(st.FirstLogSeq-1, Limit{}); !errors.Is(err, ErrLogTrimmed) {
		t.Fatalf("read trimmed: %v", err)
	}
	// Old entries come from the segment files (the tail keeps almost nothing).
	entries, err := s.ReadLog(st.FirstLogSeq, Limit{})
	if err != nil || len(entries) != int(101-st.FirstLogSeq) || entries[len(entries)-1].Seq != 100 {
		t.Fatalf("read kept: %d entries, %v", len(entries), err)
	}
	if entries, err := s.ReadLog(95, Limit{Entries: 3}); err != nil || len(entries) != 3 || entries[0].Seq != 95 || string(entries[0].Key) != "094" {
		t.Fatalf("read 95..97: %v, %v", entries, err)
	}
	if entries, err := s.ReadLog(101, Limit{}); err != nil || len(entries) != 0 {
		t.Fatalf("read past the end: %v, %v", entries, err)
	}
	s.applyMu.Unlock()
	held = false
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{LogRetention: 10, segmentSize: 300})
	if s.LastSeq() != 100 || mustGet(t, s, 0, "099") != "value" {
		t.Fatalf("after reopen last %d", s.LastSeq())
	}
}

// TestTruncateInsideCommit: a cut inside a commit closes the kept part
// with a commit record, so a reopen keeps those entries.
func TestTruncateInsideCommit(t *testing.T) {
	s, dir := newManual(t, Options{NoSync: true})
	var muts []Mutation
	for i := range 5 {
		muts = append(muts, Mutation{Slot: 3, Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")})
	}
	if _, err := s.Write(testCtx(t), muts); err != nil {
		t.Fatal(err)
	}
	if err := s.TruncateAfter(testCtx(t), 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{})
	if s.LastSeq() != 3 {
		t.Fatalf("after reopen: last %d, want 3", s.LastSeq())
	}
	for i := range 3 {
		mustGet(t, s, 3, fmt.Sprintf("k%d", i))
	}
}

// Reading the segment files a few entries at a time, as a follower
// catching up does, seeks to where the previous read stopped and returns
// exactly what one read of everything returns.
func TestReadLogInPiecesFromSegments(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true, segmentSize: 4096, tailBytes: 1})
	for i := range 300 {
		var muts []Mutation
		for j := range 1 + i%5 {
			muts = append(muts, Mutation{Slot: j, Key: fmt.Appendf(nil, "k%03d-%d", i, j), Value: fmt.Appendf(nil, "v%d", i)})
		}
		if _, err := s.Write(testCtx(t), muts); err != nil {
			t.Fatal(err)
		}
	}
	waitApplied(t, s)
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.ReadLog(st.FirstLogSeq, Limit{})
	if err != nil || len(all) != int(st.LastSeq-st.FirstLogSeq+1) {
		t.Fatalf("read all: %d entries, %v", len(all), err)
	}
	// Pieces read with ReadLog, and appended by AppendLog to those before
	// them (its bound counts only what it appends).
	for _, appending := range []bool{false, true} {
		for _, n := range []int{1, 3, 7} {
			var got []LogEntry
			for from := st.FirstLogSeq; from <= st.LastSeq; {
				var part []LogEntry
				if appending {
					before := len(got)
					got, err = s.AppendLog(got, from, Limit{Entries: n})
					if err == nil {
						part = got[before:]
					}
				} else {
					part, err = s.ReadLog(from, Limit{Entries: n})
					got = append(got, part...)
				}
				if err != nil || len(part) == 0 || len(part) > n {
					t.Fatalf("read %d from %d (appending %v): %d entries, %v", n, from, appending, len(part), err)
				}
				from = part[len(part)-1].Seq + 1
			}
			if len(got) != len(all) {
				t.Fatalf("read %d at a time (appending %v): %d entries, want %d", n, appending, len(got), len(all))
			}
			for i := range got {
				if got[i].Seq != all[i].Seq || !bytes.Equal(got[i].Key, all[i].Key) || !bytes.Equal(got[i].Value, all[i].Value) {
					t.Fatalf("read %d at a time (appending %v): entry %d is %+v, want %+v", n, appending, i, got[i], all[i])
				}
			}
		}
	}
	s.mu.RLock()
	hints := s.readHints
	s.mu.RUnlock()
	if hints.h[0].path == "" {
		t.Fatal("no read hint kept: every read started its segment from the beginning")
	}
}

// A hint found by a read that began before the segment files were cut or
// replaced is dropped.
func TestReadHintsGeneration(t *testing.T) {
	var hs readHints
	gen := hs.gen
	hs.add(gen, readHint{path: "a", seq: 10, off: 100})
	if h, ok := hs.best("a", 12); !ok || h.off != 100 {
		t.Fatalf("best = %+v, %v", h, ok)
	}
	if _, ok := hs.best("a", 9); ok {
		t.Fatal("a hint past from was used")
	}
	hs.reset()
	hs.add(gen, readHint{path: "a", seq: 20, off: 200})
	if _, ok := hs.best("a", 30); ok {
		t.Fatal("a hint survived the reset, or a stale one was added")
	}
}

// TestLogWaitersWakeForTheLog: WaitLog's waiters (a primary's shippers)
// are woken when the log's end moves or the store closes, not each time
// the durable or committed seq moves.
func TestLogWaitersWakeForTheLog(t *testing.T) {
	s, _ := newManual(t, Options{NoSync: true})
	ctx := testCtx(t)
	// The log's channel and the one of every change.
	channels := func() (log, any chan struct{}) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.logChanged, s.changed
	}
	woken := func(ch chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	ch, _ := channels()
	first := mustPut(t, s, 1, "a", "1")
	if !woken(ch) {
		t.Fatal("a write did not wake the log's waiters")
	}
	ch, changed := channels()
	s.SetCommitted(first)
	if !woken(changed) {
		t.Fatal("a new watermark woke nobody")
	}
	if woken(ch) {
		t.Fatal("a new watermark woke the log's waiters")
	}
	mustPut(t, s, 1, "b", "2")
	ch, _ = channels()
	if err := s.TruncateAfter(ctx, first); err != nil {
		t.Fatal(err)
	}
	if !woken(ch) {
		t.Fatal("a truncation did not wake the log's waiters")
	}
	// A waiter parked in WaitLog: woken by a write, then by Close.
	waited := make(chan error, 1)
	parked := func(after uint64) {
		go func() { waited <- s.WaitLog(ctx, after) }()
		deadline := time.Now().Add(5 * time.Second)
		for s.logWaiters.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("WaitLog did not wait")
			}
			time.Sleep(time.Millisecond)
		}
	}
	parked(first)
	last := mustPut(t, s, 1, "c", "3")
	if err := <-waited; err != nil {
		t.Fatalf("WaitLog woken by a write: %v", err)
	}
	parked(last)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitLog on a closed store: %v", err)
	}
}
