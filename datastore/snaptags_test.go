package datastore

import (
	"slices"
	"testing"
)

// A restore keeps the tags it was given up to its seq, sorted, across a
// reopen; the next restore's start discards them, also across a crash
// (a reopen) before its end.
func TestRestoredTagsPersist(t *testing.T) {
	s, dir := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	r, err := s.Restore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t1, t2, t3 := Tag{Client: 7, Seq: 1}, Tag{Client: 7, Seq: 2}, Tag{Client: 8, Seq: 1}
	r.SetTags([]TagSeq{{Tag: t2, Seq: 9}, {Tag: t1, Seq: 4}, {Tag: t3, Seq: 11}}) // 11 is past the snapshot
	if err := r.Finish(10, nil); err != nil {
		t.Fatal(err)
	}
	want := []TagSeq{{Tag: t1, Seq: 4}, {Tag: t2, Seq: 9}}
	check := func(what string, s *Store, want []TagSeq) {
		t.Helper()
		if got := s.RestoredTags(); !slices.Equal(got, want) {
			t.Fatalf("%s: restored tags %v, want %v", what, got, want)
		}
		if len(want) > 0 && (!s.HasRestoredTag(t1, 4) || s.HasRestoredTag(t1, 9) || s.HasRestoredTag(t3, 11)) {
			t.Fatalf("%s: HasRestoredTag answers wrongly", what)
		}
	}
	check("after the restore", s, want)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{NoSync: true})
	check("after a reopen", s, want)

	if _, err := s.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	check("while the next restore runs", s, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{NoSync: true})
	check("after a crash in the next restore", s, nil)
}

// Open collects the tags of the log it scans, applied entries included
// and untagged ones not; TakeLogTags hands them over once, and a torn
// final commit contributes none.
func TestTakeLogTags(t *testing.T) {
	s, dir := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	t1, t2 := Tag{Client: 5, Seq: 1}, Tag{Client: 5, Seq: 2}
	if _, err := s.Write(ctx, []Mutation{{Slot: 1, Key: []byte("a"), Tag: t1}, {Slot: 1, Key: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, s)
	if _, err := s.Write(ctx, []Mutation{{Slot: 2, Key: []byte("c"), Delete: true, Tag: t2}}); err != nil {
		t.Fatal(err)
	}
	if got := s.TakeLogTags(); got != nil {
		t.Fatalf("a new store's log tags: %v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{NoSync: true})
	want := []TagSeq{{Tag: t1, Seq: 1}, {Tag: t2, Seq: 3}}
	if got := s.TakeLogTags(); !slices.Equal(got, want) {
		t.Fatalf("log tags %v, want %v", got, want)
	}
	if got := s.TakeLogTags(); got != nil {
		t.Fatalf("log tags taken twice: %v", got)
	}
}

// Open keeps only the newest tags of a long log, in seq order.
func TestLogTagsWindow(t *testing.T) {
	s, dir := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	for i := range uint64(10) {
		if _, err := s.Write(ctx, []Mutation{{Slot: 0, Key: []byte("k"), Tag: Tag{Client: 1, Seq: i + 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{NoSync: true, logTags: 4})
	var want []TagSeq
	for i := uint64(7); i <= 10; i++ {
		want = append(want, TagSeq{Tag: Tag{Client: 1, Seq: i}, Seq: i})
	}
	if got := s.TakeLogTags(); !slices.Equal(got, want) {
		t.Fatalf("log tags %v, want the newest four %v", got, want)
	}
}
