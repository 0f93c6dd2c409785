package datastore

import (
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// applierGate holds the applier before each of its transactions while
// locked; closeUnapplied closes the store with what the applier holds back
// left unapplied, as a crash would.
type applierGate struct {
	sync.Mutex
	stop atomic.Bool
}

// gated returns opts with the applier behind a new gate.
func gated(opts Options) (Options, *applierGate) {
	g := &applierGate{}
	opts.hooks.beforeApply = func() error {
		g.Lock()
		defer g.Unlock()
		if g.stop.Load() {
			return errors.New("applier stopped by the test")
		}
		return nil
	}
	return opts, g
}

// closeUnapplied closes s, whose gate g is locked, without applying more.
func closeUnapplied(tb testing.TB, s *Store, g *applierGate) {
	tb.Helper()
	g.stop.Store(true)
	g.Unlock()
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
}

func mustWrite(tb testing.TB, s *Store, muts ...Mutation) uint64 {
	tb.Helper()
	seq, err := s.Write(testCtx(tb), muts)
	if err != nil {
		tb.Fatalf("write %+v: %v", muts, err)
	}
	return seq
}

func mustDrop(tb testing.TB, s *Store, slots ...int) uint64 {
	tb.Helper()
	seq, err := s.DropSlots(testCtx(tb), slots)
	if err != nil {
		tb.Fatalf("drop slots %v: %v", slots, err)
	}
	return seq
}

func mustMark(tb testing.TB, s *Store, name string) []byte {
	tb.Helper()
	v, err := s.Mark(testCtx(tb), name)
	if err != nil {
		tb.Fatalf("mark %s: %v", name, err)
	}
	return v
}

func wantNotFound(tb testing.TB, s *Store, slot int, key string) {
	tb.Helper()
	if v, err := s.Get(slot, []byte(key)); !errors.Is(err, ErrNotFound) {
		tb.Fatalf("get slot %d key %q = %q, %v; want not found", slot, key, v, err)
	}
}

func scanKeys(tb testing.TB, s *Store, slots ...int) []string {
	tb.Helper()
	kvs, err := s.Scan(testCtx(tb), slots, nil, nil, Limit{})
	if err != nil {
		tb.Fatalf("scan %v: %v", slots, err)
	}
	var keys []string
	for _, kv := range kvs {
		keys = append(keys, string(kv.Key)+"="+string(kv.Value))
	}
	return keys
}

// TestDropSlotsOverlay: once a drop is committed, gets find nothing the
// slot held before it, neither applied nor in the overlay, while the
// applier has not applied the drop; later puts and other slots are
// served; scans (which wait for the applier) agree once it ran.
func TestDropSlotsOverlay(t *testing.T) {
	opts, hold := gated(Options{NoSync: true})
	s, _ := newStore(t, opts)
	mustPut(t, s, 3, "applied", "a")
	mustPut(t, s, 4, "other", "o")
	waitApplied(t, s)
	hold.Lock()
	mustPut(t, s, 3, "overlay", "b")
	mustPut(t, s, 3, "applied", "a2") // overlay version of an applied key
	drop := mustDrop(t, s, 3)
	mustPut(t, s, 3, "after", "c")
	if s.AppliedSeq() >= drop {
		t.Fatalf("applier reached seq %d, the drop is %d", s.AppliedSeq(), drop)
	}
	check := func() {
		t.Helper()
		wantNotFound(t, s, 3, "applied")
		wantNotFound(t, s, 3, "overlay")
		if got := mustGet(t, s, 3, "after"); got != "c" {
			t.Fatalf("put after the drop = %q", got)
		}
		if got := mustGet(t, s, 4, "other"); got != "o" {
			t.Fatalf("other slot = %q", got)
		}
		res := s.GetMany([]KeyRef{{Slot: 3, Key: []byte("applied")}, {Slot: 4, Key: []byte("other")}, {Slot: 3, Key: []byte("after")}})
		if !errors.Is(res[0].Err, ErrNotFound) || string(res[1].Value) != "o" || string(res[2].Value) != "c" {
			t.Fatalf("get many = %+v", res)
		}
	}
	check()
	// A key written after the drop and deleted again is gone too.
	mustWrite(t, s, Mutation{Slot: 3, Key: []byte("after"), Delete: true})
	wantNotFound(t, s, 3, "after")
	mustPut(t, s, 3, "after", "c")
	check()
	hold.Unlock()
	if got, want := scanKeys(t, s, 3, 4), []string{"after=c", "other=o"}; !slices.Equal(got, want) {
		t.Fatalf("scan after the drop = %v, want %v", got, want)
	}
	check()
}

// TestDropUncommitted: a drop above the committed seq hides nothing; once
// committed it hides what came before it, also from a later put's chain.
func TestDropUncommitted(t *testing.T) {
	s, _ := newManual(t, Options{NoSync: true})
	s.SetCommitted(mustPut(t, s, 2, "k", "v1"))
	s.SetCommitted(mustPut(t, s, 2, "k", "v2"))
	drop := mustDrop(t, s, 2)
	put := mustPut(t, s, 2, "k", "v3")
	if got := mustGet(t, s, 2, "k"); got != "v2" {
		t.Fatalf("before the drop is committed: %q", got)
	}
	s.SetCommitted(drop)
	wantNotFound(t, s, 2, "k")
	s.SetCommitted(put)
	if got := mustGet(t, s, 2, "k"); got != "v3" {
		t.Fatalf("after the put is committed: %q", got)
	}
}

// TestDropRestartReplay: a drop holds across a replay of the log when it
// was not applied, and across a restart after it was.
func TestDropRestartReplay(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	opts, gate := gated(Options{Slots: 16, NoSync: true})
	s := openStore(t, dir, opts)
	mustPut(t, s, 5, "old", "v")
	mustPut(t, s, 6, "keep", "v")
	waitApplied(t, s)
	gate.Lock()
	drop := mustDrop(t, s, 5)
	mustPut(t, s, 5, "new", "w")
	if s.AppliedSeq() >= drop {
		t.Fatalf("applier reached the drop")
	}
	closeUnapplied(t, s, gate)
	check := func(s *Store) {
		t.Helper()
		wantNotFound(t, s, 5, "old")
		if mustGet(t, s, 5, "new") != "w" || mustGet(t, s, 6, "keep") != "v" {
			t.Fatal("wrong content after the drop")
		}
	}
	s = openStore(t, dir, Options{NoSync: true})
	if s.AppliedSeq() >= drop {
		t.Fatalf("reopened store applied seq %d, want below the drop at %d", s.AppliedSeq(), drop)
	}
	check(s)
	waitApplied(t, s)
	check(s)
	if got, want := scanKeys(t, s, 5, 6), []string{"keep=v", "new=w"}; !slices.Equal(got, want) {
		t.Fatalf("scan = %v, want %v", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{NoSync: true})
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dir); err != nil {
		t.Fatal(err)
	}
}

// TestMarks: a mark reads back committed (from the overlay, then from
// bbolt), the newest value wins, it survives a replay and a restart, and
// it is never a key: gets, scans and digests of slot 0 do not see it.
func TestMarks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	opts, gate := gated(Options{Slots: 16, NoSync: true})
	s := openStore(t, dir, opts)
	if v := mustMark(t, s, "migration/1"); v != nil {
		t.Fatalf("unwritten mark = %q", v)
	}
	mustWrite(t, s, Mutation{Slot: 0, Key: []byte("k"), Value: []byte("v")}, Mutation{Mark: true, Key: []byte("migration/1"), Value: []byte("10")})
	mustWrite(t, s, Mutation{Mark: true, Slot: 9, Key: []byte("k"), Value: []byte("mark k")})
	check := func(s *Store, m1 string) {
		t.Helper()
		if v := mustMark(t, s, "migration/1"); string(v) != m1 {
			t.Fatalf("mark migration/1 = %q, want %q", v, m1)
		}
		if v := mustMark(t, s, "k"); string(v) != "mark k" {
			t.Fatalf("mark k = %q", v)
		}
		if v := mustGet(t, s, 0, "k"); v != "v" {
			t.Fatalf("key k = %q", v)
		}
		wantNotFound(t, s, 0, "migration/1")
		wantNotFound(t, s, 9, "k")
	}
	check(s, "10")
	waitApplied(t, s)
	check(s, "10")
	gate.Lock()
	mustWrite(t, s, Mutation{Mark: true, Key: []byte("migration/1"), Value: []byte("20")})
	check(s, "20")
	closeUnapplied(t, s, gate)
	s = openStore(t, dir, Options{NoSync: true})
	check(s, "20")
	if got := scanKeys(t, s, 0, 9); !slices.Equal(got, []string{"k=v"}) {
		t.Fatalf("scan = %v", got)
	}
	if _, d, err := s.SlotDigests(testCtx(t), []int{0, 9}, s.CommittedSeq()); err != nil || d[0].Keys != 1 || d[1].Keys != 0 {
		t.Fatalf("digests %+v, %v", d, err)
	}
	check(s, "20")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{NoSync: true})
	check(s, "20")
	if _, err := s.Mark(testCtx(t), ""); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("empty mark name: %v", err)
	}
}

// TestDropMarkReplicate: ReadLog returns drops and marks, and a follower
// that appends them with ApplyLog ends up with the same content and marks.
func TestDropMarkReplicate(t *testing.T) {
	p, _ := newStore(t, Options{NoSync: true})
	mustPut(t, p, 1, "a", "1")
	mustPut(t, p, 2, "b", "2")
	drop := mustDrop(t, p, 1)
	mark := mustWrite(t, p, Mutation{Mark: true, Key: []byte("m"), Value: []byte("x")})
	entries, err := p.ReadLog(1, Limit{})
	if err != nil {
		t.Fatal(err)
	}
	if e := entries[drop-1]; !e.Drop || e.Slot != 1 || len(e.Key) != 0 || e.Mark || e.Delete {
		t.Fatalf("drop entry %+v", e)
	}
	if e := entries[mark-1]; !e.Mark || string(e.Key) != "m" || string(e.Value) != "x" || e.Drop {
		t.Fatalf("mark entry %+v", e)
	}
	f, dir := newStore(t, Options{NoSync: true})
	if err := f.ApplyLog(testCtx(t), entries); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, f, 1, "a")
	if mustGet(t, f, 2, "b") != "2" || string(mustMark(t, f, "m")) != "x" {
		t.Fatal("follower lost a put or the mark")
	}
	// From the segment files too, after a restart.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = openStore(t, dir, Options{NoSync: true})
	again, err := f.ReadLog(1, Limit{})
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(entries) || !again[drop-1].Drop || !again[mark-1].Mark || string(again[mark-1].Value) != "x" {
		t.Fatalf("follower's log %+v", again)
	}
}

// TestBadMutation: a drop with a key, or a mutation of two kinds, is
// refused and nothing of its call is written.
func TestBadMutation(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	for _, m := range []Mutation{
		{Slot: 1, Drop: true, Key: []byte("k")},
		{Slot: 1, Drop: true, Value: []byte("v")},
		{Slot: 1, Drop: true, Delete: true},
		{Mark: true, Delete: true, Key: []byte("k")},
		{Mark: true, Drop: true},
	} {
		if _, err := s.Write(testCtx(t), []Mutation{{Slot: 1, Key: []byte("x")}, m}); !errors.Is(err, ErrBadMutation) {
			t.Fatalf("write %+v: %v", m, err)
		}
		if err := s.ApplyLog(testCtx(t), []LogEntry{{Seq: 1, Slot: m.Slot, Key: m.Key, Value: m.Value, Delete: m.Delete, Drop: m.Drop, Mark: m.Mark}}); !errors.Is(err, ErrBadMutation) {
			t.Fatalf("apply log %+v: %v", m, err)
		}
	}
	if _, err := s.DropSlots(testCtx(t), []int{16}); !errors.Is(err, ErrBadSlot) {
		t.Fatalf("drop slot 16 of 16: %v", err)
	}
	if s.LastSeq() != 0 {
		t.Fatalf("last seq %d after refused writes", s.LastSeq())
	}
}
