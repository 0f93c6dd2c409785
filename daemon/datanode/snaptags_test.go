package datanode

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/wire"
)

// divergedStore leaves in dir the store of a node that committed more
// entries at epoch than the group's log holds there (as if it came from
// another cluster): its primary must send it a snapshot, as truncating its
// log cannot repair it.
func divergedStore(t *testing.T, dir string, epoch, entries uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	s, err := datastore.Open(filepath.Join(dir, "store"), datastore.Options{Slots: 16, AutoCommit: true, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetEpoch(ctx, epoch); err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		if _, err := s.Write(ctx, []datastore.Mutation{{Slot: 0, Key: fmt.Appendf(nil, "stale%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	// Applied, the entries count as committed when the store is opened again.
	eventually(t, "the diverged entries applied", func() bool { return s.AppliedSeq() == s.LastSeq() })
}

// A member that caught up from a snapshot knows the tags of the writes the
// snapshot covers: once it leads, a retry of a write acknowledged before
// the snapshot is answered without a second log entry, also after it
// restarted.
func TestSnapshotCarriesTheRetryWindow(t *testing.T) {
	c := newTestCluster(t)
	a := c.startNode(nodeDir(t, "a"), nil, nil)
	c.waitServing(a)
	mustOK(t, "first attempt", call(t, a.Addr(), patience, taggedPut("k", "A", 42, 1))[0])
	seq := a.store().LastSeq()

	bdir := nodeDir(t, "b")
	divergedStore(t, bdir, c.group().Epoch, a.store().LastSeq()+50)
	b := c.startNode(bdir, nil, nil)
	c.waitServing(a, b)
	if first := b.store().FirstLogSeq(); first <= seq {
		t.Fatalf("b's log starts at %d: it caught up without a snapshot", first)
	}
	eventually(t, "b holds the first attempt", func() bool { return b.store().CommittedSeq() >= a.store().LastSeq() })

	s := &service{n: a}
	if _, err := s.Handover(context.Background(), &wire.HandoverRequest{Epoch: c.group().Epoch, To: b.ID()}); err != nil {
		t.Fatal(err)
	}
	c.waitServing(b)
	mustOK(t, "another client's put", call(t, b.Addr(), patience, put("k", "B"))[0])
	retry := func(what string) {
		t.Helper()
		last := b.store().LastSeq()
		mustOK(t, what, call(t, b.Addr(), patience, taggedPut("k", "A", 42, 1))[0])
		if got := b.store().LastSeq(); got != last {
			t.Fatalf("%s: the retry was appended again: log end %d → %d", what, last, got)
		}
		if r := call(t, b.Addr(), patience, get("k"))[0]; string(r.Value) != "B" {
			t.Fatalf("%s: k = %q, want the later put's B", what, r.Value)
		}
	}
	retry("retry on the member restored from a snapshot")

	// Restart b alone: a leaves first, so b leads again.
	a.Close()
	c.waitGroup("a out of the in-sync set", func(g *coord.Group) bool { return !slices.Contains(g.ISR, a.ID()) })
	b.Close()
	b = c.startNode(bdir, nil, nil)
	c.waitGroup("b leads again", func(g *coord.Group) bool { return g.Primary == b.ID() })
	c.waitServing(b)
	retry("retry after the restart")
}

// A snapshot carries only the table's tags whose entries the store holds
// at or below the snapshot's seq: a tag the table still names but whose
// entry is gone (truncated, replaced) would make the follower answer a
// write that was never written.
func TestSnapshotTagsAreCheckedAgainstTheLog(t *testing.T) {
	store := smallStore(t)
	held, later := datastore.Tag{Client: 1, Seq: 1}, datastore.Tag{Client: 1, Seq: 3}
	muts := []datastore.Mutation{{Slot: 1, Key: []byte("a"), Tag: held}, {Slot: 1, Key: []byte("b")}, {Slot: 1, Key: []byte("c"), Tag: later}}
	if _, err := store.Write(context.Background(), muts); err != nil {
		t.Fatal(err)
	}
	n := &Node{dedupe: newDedupe()}
	n.db.Store(store)
	gone := datastore.Tag{Client: 2, Seq: 1}
	n.dedupe.appended(1, []datastore.Tag{held, gone, later})
	got, err := n.snapshotTags(store, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []datastore.TagSeq{{Tag: held, Seq: 1}}; !slices.Equal(got, want) {
		t.Fatalf("snapshot at 2 carries %v, want %v", got, want)
	}
}
