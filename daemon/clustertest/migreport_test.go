package clustertest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/admin"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/clustertest"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// The tests of this file check what the data nodes report about slot
// migrations for the admin commands: per-slot counts, and the holds'
// pauses.

// slotCountsOf asks node name for its slot counts, by slot.
func slotCountsOf(t *testing.T, c *clustertest.Cluster, name string) map[int]*wire.SlotDigest {
	t.Helper()
	st, err := nodeclient.Nodes{}.NodeSlotCounts(ctxFor(t, 10*time.Second), c.Node(name).Addr())
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]*wire.SlotDigest{}
	for _, d := range st.SlotCounts {
		if d.Keys == 0 {
			t.Errorf("node %s lists slot %d without keys", name, d.Slot)
		}
		out[int(d.Slot)] = d
	}
	return out
}

// A node counts every slot's keys and bytes only when asked: what its
// store holds, whoever owns the slot.
func TestNodeSlotCounts(t *testing.T) {
	c := twoGroups(t)
	cli := c.Client()
	keys := append(slotKeys("a", 0, 0, 30), slotKeys("b", 5, 6, 20)...)
	put(t, cli, keys...)
	var bytes uint64
	for _, k := range keys {
		bytes += uint64(len(k) + len("v-"+k))
	}
	primary := c.Primary("g1")
	counts := slotCountsOf(t, c, primary)
	var sumKeys, sumBytes uint64
	for slot, d := range counts {
		if slot != 0 && slot != 5 && slot != 6 {
			t.Errorf("slot %d counted: %v", slot, d)
		}
		if want := keysIn(t, c, []int{slot}, primary); d.Keys != want {
			t.Errorf("slot %d: %d keys counted, the store holds %d", slot, d.Keys, want)
		}
		sumKeys, sumBytes = sumKeys+d.Keys, sumBytes+d.Bytes
	}
	if counts[0].GetKeys() != 30 || sumKeys != 50 || sumBytes != bytes {
		t.Fatalf("counted %d keys (%d in slot 0), %d bytes; want 50 (30), %d", sumKeys, counts[0].GetKeys(), sumBytes, bytes)
	}
	st, err := nodeclient.Nodes{}.NodeStatus(ctxFor(t, 10*time.Second), c.Node(primary).Addr())
	if err != nil || len(st.SlotCounts) != 0 {
		t.Fatalf("status not asking for counts has %d of them, %v", len(st.SlotCounts), err)
	}
}

// The source's primary reports how many holds of a migration ended and
// how long the last one held requests: a hold it released itself lasted
// at least its bound; the hold that switched ends with the switch, and
// the report on the dropped migration carries both.
func TestMigrationPauses(t *testing.T) {
	c := twoGroups(t)
	cli := c.Client()
	put(t, cli, slotKeys("m", 8, 11, 50)...)
	w := startWriters(t, cli, slotKeys("w", 8, 11, 20), 2)
	startMigration(t, c, coord.Migration{ID: "p1", From: "g1", To: "g2", First: 8, Last: 11})
	if r := waitReport(c, "g1", "p1", phase("serving")); r.Holds != 0 || r.LastPauseMicros != 0 {
		t.Fatalf("source report before any hold: %+v", r)
	}
	waitReport(c, "g2", "p1", phase("caught-up"))
	updateMigration(t, c, "p1", func(_ *coord.SlotTable, m *coord.Migration) {
		m.State, m.Since = coord.MigrationHold, time.Now().UTC()
	})
	released := waitReport(c, "g1", "p1", func(r *wire.MigrationStatus) bool { return r.Holds == 1 })
	if got := time.Duration(released.LastPauseMicros) * time.Microsecond; got < holdBound || got > time.Minute {
		t.Fatalf("the hold the source released after %s paused %s", holdBound, got)
	}

	src, dst, attempt := freeze(t, c, "p1")
	if !sameDigests(src.Digests, dst.Digests) || !switchSlots(t, c, "p1", attempt) {
		t.Fatalf("could not switch: source %v, target %v", src.Digests, dst.Digests)
	}
	dropped := waitReport(c, "g1", "p1", phase("dropped"))
	if dropped.Holds < 2 || dropped.LastPauseMicros <= 0 || time.Duration(dropped.LastPauseMicros)*time.Microsecond > time.Minute {
		t.Fatalf("source report after the switch: %d holds, last paused %dµs; want at least 2, the last ended by the switch", dropped.Holds, dropped.LastPauseMicros)
	}
	removeMigration(t, c, "p1")
	w.check(cli)
}

// Keys a group holds in slots it neither owns nor moves — here the import
// of a migration taken out of the table without an abort — show in
// admin status as orphaned, with their slots and count.
func TestStatusOrphanedKeys(t *testing.T) {
	c := twoGroups(t)
	cli := c.Client()
	put(t, cli, slotKeys("o", 12, 13, 40)...)
	status := func() string {
		s, err := admin.CollectStatus(ctxFor(t, 20*time.Second), c.Coord(), nodeclient.Nodes{}.NodeStatus, nodeclient.Nodes{}.NodeSlotCounts)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(s.Warnings, "\n")
	}
	startMigration(t, c, coord.Migration{ID: "o1", From: "g1", To: "g2", First: 12, Last: 13})
	waitReport(c, "g2", "o1", phase("caught-up"))
	if got := status(); strings.Contains(got, "orphaned") {
		t.Fatalf("status during the import warns:\n%s", got)
	}
	removeMigration(t, c, "o1") // what a lost abort would leave
	staged := keysIn(t, c, []int{12, 13}, c.Primary("g2"))
	if staged < 40 {
		t.Fatalf("the target's primary holds %d keys of the slots; want at least 40", staged)
	}
	want := "group g2 holds 40 orphaned keys"
	if got := status(); !strings.Contains(got, want) || !strings.Contains(got, "in slots 12-13:") || strings.Contains(got, "group g1 holds") {
		t.Fatalf("status warnings lack %q for slots 12-13:\n%s", want, got)
	}
}
