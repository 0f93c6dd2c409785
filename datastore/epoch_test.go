package datastore

import (
	"errors"
	"slices"
	"testing"
)

func TestEpochMapPersists(t *testing.T) {
	s, path := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	mustPut(t, s, 0, "a", "1")
	mustPut(t, s, 0, "b", "2")
	if err := s.SetEpoch(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.SetEpoch(ctx, 3); err != nil {
		t.Fatalf("setting the same epoch again: %v", err)
	}
	if err := s.SetEpoch(ctx, 2); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("older epoch: %v", err)
	}
	mustPut(t, s, 0, "c", "3")
	if err := s.SetEpoch(ctx, 7); err != nil {
		t.Fatal(err)
	}
	want := []EpochStart{{0, 1}, {3, 3}, {7, 4}}
	if got := s.Epochs(); !slices.Equal(got, want) {
		t.Fatalf("epochs = %v, want %v", got, want)
	}
	entries, err := s.ReadLog(1, Limit{})
	if err != nil {
		t.Fatal(err)
	}
	if epochs := []uint64{entries[0].Epoch, entries[1].Epoch, entries[2].Epoch}; !slices.Equal(epochs, []uint64{0, 0, 3}) {
		t.Fatalf("entry epochs = %v", epochs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, path, Options{})
	if got := s.Epochs(); !slices.Equal(got, want) || s.Epoch() != 7 {
		t.Fatalf("after reopen: epoch %d map %v", s.Epoch(), got)
	}
	ends := []struct{ ask, found, end uint64 }{{0, 0, 3}, {2, 0, 3}, {3, 3, 4}, {5, 3, 4}, {7, 7, 4}, {9, 7, 4}}
	for _, e := range ends {
		found, end, ok := s.EpochEnd(e.ask)
		if !ok || found != e.found || end != e.end {
			t.Errorf("EpochEnd(%d) = %d, %d, %v; want %d, %d", e.ask, found, end, ok, e.found, e.end)
		}
	}
	if got := mustPut(t, s, 0, "d", "4"); got != 4 {
		t.Fatalf("seq = %d", got)
	}
	if e, _ := s.ReadLog(4, Limit{Entries: 1}); e[0].Epoch != 7 {
		t.Fatalf("write after reopen has epoch %d", e[0].Epoch)
	}
	if _, end, _ := s.EpochEnd(7); end != 5 {
		t.Fatalf("EpochEnd(7) end = %d, want 5", end)
	}
}

func TestEpochEndEmpty(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	if _, _, ok := s.EpochEnd(3); ok {
		t.Fatal("EpochEnd on an empty map reported ok")
	}
}

func TestWithEntryEpoch(t *testing.T) {
	cases := []struct {
		name   string
		in     []EpochStart
		seq, e uint64
		want   []EpochStart
	}{
		{"first entry", nil, 1, 0, []EpochStart{{0, 1}}},
		{"same epoch", []EpochStart{{2, 1}}, 9, 2, []EpochStart{{2, 1}}},
		{"new epoch", []EpochStart{{2, 1}}, 9, 4, []EpochStart{{2, 1}, {4, 9}}},
		// A follower fenced to epoch 5 at seq 10 still receives epoch 4 entries.
		{"catch up below fence", []EpochStart{{3, 1}, {5, 10}}, 10, 4, []EpochStart{{3, 1}, {4, 10}, {5, 11}}},
		{"catch up in known epoch", []EpochStart{{3, 1}, {5, 10}}, 10, 3, []EpochStart{{3, 1}, {5, 11}}},
	}
	for _, c := range cases {
		in := slices.Clone(c.in)
		got := withEntryEpoch(in, c.seq, c.e)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("%s: input modified", c.name)
		}
	}
}

// A follower fenced to a new epoch before it caught up on the old one keeps
// a map that says where each epoch really starts in its log.
func TestApplyLogBelowFence(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	if err := s.SetEpoch(ctx, 5); err != nil {
		t.Fatal(err)
	}
	entries := []LogEntry{
		{Seq: 1, Epoch: 3, Slot: 1, Key: []byte("a")},
		{Seq: 2, Epoch: 4, Slot: 1, Key: []byte("b")},
	}
	if err := s.ApplyLog(ctx, entries); err != nil {
		t.Fatal(err)
	}
	want := []EpochStart{{3, 1}, {4, 2}, {5, 3}}
	if got := s.Epochs(); !slices.Equal(got, want) || s.Epoch() != 5 {
		t.Fatalf("epoch %d map %v, want 5 %v", s.Epoch(), got, want)
	}
	if err := s.ApplyLog(ctx, []LogEntry{{Seq: 3, Epoch: 6, Slot: 1, Key: []byte("c")}}); err != nil {
		t.Fatal(err)
	}
	if s.Epoch() != 6 {
		t.Fatalf("epoch after newer entry = %d", s.Epoch())
	}
}
