package datanode

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// An in-sync secondary dumps every key of the slots asked, slot by slot in
// the order asked and in key order within a slot, cut at a seq the primary
// had committed; large values cross message bounds; a member out of the
// in-sync set refuses.
func TestDumpFromInSyncSecondary(t *testing.T) {
	c, a, b := startPair(t)
	c.waitGroup("b in sync", func(g *coord.Group) bool { return slices.Contains(g.ISR, b.ID()) })
	big := bytes.Repeat([]byte("v"), shipBytes/2+1)
	want := map[string][]byte{}
	var reqs []*wire.Request
	for i := range 200 {
		k, v := fmt.Sprintf("key-%03d", i), []byte(fmt.Sprintf("value-%d", i))
		if i%50 == 0 {
			v = big
		}
		want[k] = v
		reqs = append(reqs, &wire.Request{Op: wire.Op_PUT, Key: []byte(k), Value: v})
	}
	for _, r := range call(t, a.Addr(), patience, reqs...) {
		if r.Code != wire.Code_OK {
			t.Fatalf("put: %v %s", r.Code, r.Message)
		}
	}
	committed := a.store().CommittedSeq()
	// Large writes on a loaded machine may have put b out of sync for a while.
	eventually(t, "b back in sync", func() bool { return slices.Contains(b.state.Load().group.ISR, b.ID()) })
	slots := []int{15, 3, 0, 7, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	got := map[string][]byte{}
	var order []int
	var lastKey []byte
	var cut nodeclient.DumpCut
	err := nodeclient.Nodes{}.Dump(ctx, b.Addr(), slots, committed, 0, func(c nodeclient.DumpCut) error { cut = c; return nil }, func(slot int, key, value []byte) error {
		if len(order) == 0 || order[len(order)-1] != slot {
			order, lastKey = append(order, slot), nil
		} else if bytes.Compare(lastKey, key) >= 0 {
			t.Errorf("slot %d: key %q after %q", slot, key, lastKey)
		}
		if s := coord.SlotOf(key, 16); s != slot {
			t.Errorf("key %q in slot %d, belongs in %d", key, slot, s)
		}
		lastKey = key
		got[string(key)] = value
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	delete(got, "ping") // waitServing's
	if len(got) != len(want) {
		t.Fatalf("dumped %d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("key %s: %d bytes, want %d", k, len(got[k]), len(v))
		}
	}
	if i := slices.IndexFunc(order, func(s int) bool { return slices.Index(slots, s) < 0 }); i >= 0 || !isSubsequence(order, slots) {
		t.Errorf("slots dumped in order %v, asked %v", order, slots)
	}
	if cut.Seq < committed || cut.Epoch != c.group().Epoch {
		t.Errorf("cut %+v, want seq >= %d at epoch %d", cut, committed, c.group().Epoch)
	}

	// A member whose table is older than the backup's does not judge
	// ownership from it.
	ahead := b.state.Load().table.Version + 1
	err = nodeclient.Nodes{}.Dump(ctx, b.Addr(), slots, 0, ahead, func(nodeclient.DumpCut) error { return nil }, func(int, []byte, []byte) error { return nil })
	if wire.CodeOf(err) != wire.Code_STALE_EPOCH {
		t.Fatalf("dump asking for slot table v%d: %v, want STALE_EPOCH", ahead, err)
	}

	b.update(func(s *state) {
		g := *s.group
		g.ISR = slices.DeleteFunc(slices.Clone(g.ISR), func(id string) bool { return id == b.ID() })
		s.group = &g
	})
	err = nodeclient.Nodes{}.Dump(ctx, b.Addr(), slots, 0, 0, func(nodeclient.DumpCut) error { return nil }, func(int, []byte, []byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "not in the in-sync set") {
		t.Fatalf("dump from a member out of the in-sync set: %v", err)
	}
}

// isSubsequence reports whether sub appears in seq in order.
func isSubsequence(sub, seq []int) bool {
	i := 0
	for _, s := range seq {
		if i < len(sub) && sub[i] == s {
			i++
		}
	}
	return i == len(sub)
}
