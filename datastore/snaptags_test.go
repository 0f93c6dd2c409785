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
