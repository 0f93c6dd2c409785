package datastore

import (
	"context"
	"errors"
	"math/rand"
	"testing"
)

// TestTailLog checks the chunked tail against a plain slice through random
// appends and drops at both ends, across chunk boundaries, and checks that
// a view keeps its entries while the tail moves on.
func TestTailLog(t *testing.T) {
	var tl tailLog
	var want []uint64
	next := uint64(1)
	rng := rand.New(rand.NewSource(1))
	check := func(step int) {
		t.Helper()
		if tl.len() != len(want) {
			t.Fatalf("step %d: len %d, want %d", step, tl.len(), len(want))
		}
		for i, seq := range want {
			if got := tl.at(i).seq; got != seq {
				t.Fatalf("step %d: entry %d has seq %d, want %d", step, i, got, seq)
			}
		}
		if len(want) > 0 {
			if e := tl.bySeq(want[len(want)/2]); e == nil || e.seq != want[len(want)/2] {
				t.Fatalf("step %d: bySeq(%d) = %v", step, want[len(want)/2], e)
			}
			if tl.bySeq(want[0]-1) != nil || tl.bySeq(next) != nil {
				t.Fatalf("step %d: bySeq outside the tail found an entry", step)
			}
		}
	}
	for step := range 300 {
		switch k := rng.Intn(3 * tailChunkLen); rng.Intn(4) {
		case 0, 1:
			for range k {
				tl.push(entry{seq: next})
				want = append(want, next)
				next++
			}
		case 2:
			k = min(k, len(want))
			tl.dropFront(k)
			want = want[k:]
		case 3:
			k = min(k, len(want))
			tl.dropBack(k)
			want = want[:len(want)-k]
			if len(want) > 0 {
				next = want[len(want)-1] + 1
			}
		}
		check(step)
		if len(want) > 2 {
			i, j := len(want)/3, len(want)-1
			v := tl.view(i, j)
			tl.dropFront(i)
			for range tailChunkLen + 1 {
				tl.push(entry{seq: next})
				want = append(want, next)
				next++
			}
			for x := range v.len() {
				if got := v.at(x).seq; got != want[i+x] {
					t.Fatalf("step %d: view entry %d has seq %d, want %d", step, x, got, want[i+x])
				}
			}
			want = want[i:]
			check(step)
		}
	}
}

// TestOverlayCollisions makes every key share one overlay hash: reads still
// find each key's newest committed version, skip uncommitted ones, and see
// the right versions after a truncation and after the applier ran.
func TestOverlayCollisions(t *testing.T) {
	s, _ := newManual(t, Options{NoSync: true, hooks: hooks{keyHash: func(uint16, []byte) uint64 { return 7 }}})
	ctx := context.Background()
	mustPut(t, s, 1, "a", "a1")
	mustPut(t, s, 2, "a", "other slot")
	mustPut(t, s, 1, "b", "b1")
	mustPut(t, s, 1, "a", "a2")
	s.SetCommitted(4)
	if _, err := s.Write(ctx, []Mutation{{Slot: 1, Key: []byte("b"), Delete: true}}); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, 1, "c", "c1") // seqs 5 and 6 stay uncommitted
	for key, want := range map[string]string{"a": "a2", "b": "b1"} {
		if got := mustGet(t, s, 1, key); got != want {
			t.Fatalf("%s = %q, want %q", key, got, want)
		}
	}
	if got := mustGet(t, s, 2, "a"); got != "other slot" {
		t.Fatalf("slot 2 a = %q", got)
	}
	if _, err := s.Get(1, []byte("c")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("uncommitted c: %v", err)
	}
	if err := s.SetEpoch(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.TruncateAfter(ctx, 5); err != nil {
		t.Fatal(err)
	}
	s.SetCommitted(5)
	if _, err := s.Get(1, []byte("b")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted b: %v", err)
	}
	if _, err := s.Get(1, []byte("c")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("truncated c: %v", err)
	}
	waitApplied(t, s)
	mustPut(t, s, 1, "d", "d1")
	s.SetCommitted(s.LastSeq())
	for key, want := range map[string]string{"a": "a2", "d": "d1"} {
		if got := mustGet(t, s, 1, key); got != want {
			t.Fatalf("after apply %s = %q, want %q", key, got, want)
		}
	}
	if _, err := s.Get(1, []byte("b")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after apply, deleted b: %v", err)
	}
}
