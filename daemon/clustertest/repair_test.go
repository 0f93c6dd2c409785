package clustertest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/admin"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/clustertest"
	"github.com/thunderyurts/thunderyurts/daemon/datanode"
	"github.com/thunderyurts/thunderyurts/datastore"
)

func withRepair(cfg *datanode.Config) { cfg.Repair = true }

// asideDirs lists the damaged-* directories in node name's store.
func asideDirs(t *testing.T, c *clustertest.Cluster, name string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(c.Dir(name), "store", "damaged-*"))
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// A replica whose store is refused as damaged does not start; with Repair
// it leaves the in-sync set, sets its files aside, rebuilds from the group,
// rejoins the set and holds every acknowledged write. Damage to the log or
// to the bbolt file, of a secondary or of the primary (which the
// coordinator fails over first).
func TestRepairRebuildsFromGroup(t *testing.T) {
	cases := []struct {
		name    string
		primary bool
		damage  func(testing.TB, string) string
		kept    string // what the damaged-* directory holds
	}{
		{"log of a secondary", false, clustertest.DamageLog, "wal"},
		{"data file of a secondary", false, clustertest.DamageDataFile, "data.db"},
		{"log of the primary", true, clustertest.DamageLog, "wal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := group(t, 3, clustertest.Options{MaxLag: 500 * time.Millisecond})
			cli := c.Client()
			before := keys("before", 200)
			put(t, cli, before...)
			victim := c.Primary("g1")
			if !tc.primary {
				victim = map[string]string{"n1": "n2", "n2": "n3", "n3": "n1"}[victim]
			}
			id := c.Node(victim).ID()
			c.Kill(victim)
			during := keys("during", 50)
			put(t, cli, during...)

			store := filepath.Join(c.Dir(victim), "store")
			file := tc.damage(t, store)
			err := c.RestartWith(victim, nil)
			if !errors.Is(err, datastore.ErrCorrupt) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "--repair") {
				t.Fatalf("restart of the damaged node: %v; want ErrCorrupt naming %s and --repair", err, file)
			}
			if d := asideDirs(t, c, victim); len(d) != 0 {
				t.Fatalf("a refused start set files aside: %v", d)
			}

			if err := c.RestartWith(victim, withRepair); err != nil {
				t.Fatalf("restart with repair: %v", err)
			}
			g := c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 3 })
			if g.Primary == id {
				t.Fatalf("the repaired node is primary: %+v", g)
			}
			aside := asideDirs(t, c, victim)
			if len(aside) != 1 {
				t.Fatalf("damaged-* directories: %v; want one", aside)
			}
			if _, err := os.Stat(filepath.Join(aside[0], tc.kept)); err != nil {
				t.Fatalf("the damaged %s was not kept: %v", tc.kept, err)
			}
			// It holds everything: make it primary and read.
			handover(t, c, c.NameOf(g.Primary), victim)
			mustGet(t, cli, append(before, during...)...)
		})
	}
}

// The only in-sync replica of a group is never rebuilt: its data is all
// there is. The repair is refused and nothing is moved.
func TestRepairRefusesOnlyInSyncReplica(t *testing.T) {
	c := group(t, 2, clustertest.Options{MaxLag: 300 * time.Millisecond})
	cli := c.Client()
	put(t, cli, keys("k", 100)...)
	p := c.Primary("g1")
	f := map[string]string{"n1": "n2", "n2": "n1"}[p]
	pid := c.Node(p).ID()
	c.Kill(f)
	c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 1 })
	c.Kill(p)
	file := clustertest.DamageLog(t, filepath.Join(c.Dir(p), "store"))

	err := c.RestartWith(p, withRepair)
	if !errors.Is(err, coord.ErrOnlyInSync) || !strings.Contains(err.Error(), pid) || !strings.Contains(err.Error(), "only in-sync replica of g1") {
		t.Fatalf("repair of the only in-sync replica: %v; want coord.ErrOnlyInSync naming %s", err, pid)
	}
	if d := asideDirs(t, c, p); len(d) != 0 {
		t.Fatalf("files set aside: %v", d)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("damaged segment moved: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.Resync(ctx, c.Coord(), "g1", pid); !errors.Is(err, coord.ErrOnlyInSync) {
		t.Fatalf("admin resync of the only in-sync replica: %v; want coord.ErrOnlyInSync", err)
	}
	g, _, err := c.Coord().Group(ctx, "g1")
	if err != nil || !slices.Equal(g.ISR, []string{pid}) || len(g.Resync) != 0 {
		t.Fatalf("group after refusals: %+v, %v; want ISR [%s] unchanged, no resync", g, err, pid)
	}
}

// admin node resync refuses a running node; a stopped one leaves the
// in-sync set at once, and at its next start (without Repair, its store
// healthy) sets its files aside, rebuilds from the group, clears the mark
// and rejoins the set.
func TestAdminResync(t *testing.T) {
	c := group(t, 3, clustertest.Options{MaxLag: 500 * time.Millisecond})
	cli := c.Client()
	before := keys("before", 100)
	put(t, cli, before...)
	p := c.Primary("g1")
	s := map[string]string{"n1": "n2", "n2": "n3", "n3": "n1"}[p]
	id := c.Node(s).ID()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := admin.Resync(ctx, c.Coord(), "", id); !errors.Is(err, admin.ErrNodeRunning) {
		t.Fatalf("resync of a running node: %v; want admin.ErrNodeRunning", err)
	}
	c.Kill(s)
	res, err := admin.Resync(ctx, c.Coord(), "", id)
	if err != nil {
		t.Fatalf("resync: %v", err)
	}
	g, _, err := c.Coord().Group(ctx, "g1")
	if err != nil || res.Group != "g1" || slices.Contains(g.ISR, id) || !slices.Equal(g.Resync, []string{id}) {
		t.Fatalf("after resync: %+v, group %+v, %v; want %s out of the ISR and marked", res, g, err, id)
	}
	during := keys("during", 50)
	put(t, cli, during...)

	c.Restart(s)
	g = c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 3 && len(g.Resync) == 0 })
	if d := asideDirs(t, c, s); len(d) != 1 {
		t.Fatalf("damaged-* directories: %v; want one", d)
	}
	handover(t, c, c.NameOf(g.Primary), s)
	mustGet(t, cli, append(before, during...)...)
}

// A repairing node leaves the in-sync set, with a new epoch, before it
// serves in any role: still counted in sync when it starts (as in the
// moment between its crash and its primary noticing), and cut off from its
// primary so it cannot catch up, it is out of the set once it has started,
// and the group writes without it. Once the link is back it catches up and
// returns.
func TestRepairLeavesISRFirst(t *testing.T) {
	c := group(t, 3, clustertest.Options{})
	cli := c.Client()
	before := keys("before", 100)
	put(t, cli, before...)
	p := c.Primary("g1")
	v := map[string]string{"n1": "n2", "n2": "n3", "n3": "n1"}[p]
	id := c.Node(v).ID()
	c.Kill(v)
	// The primary drops the killed node; put it back in the znode's set
	// (the primary, which dropped it, does not drop it again).
	c.WaitGroup("g1", func(g *coord.Group) bool { return !slices.Contains(g.ISR, id) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g0, err := c.Coord().UpdateGroup(ctx, "g1", func(g *coord.Group) error {
		g.ISR = append(g.ISR, id)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	clustertest.DamageLog(t, filepath.Join(c.Dir(v), "store"))
	c.Partition(v, p)
	if err := c.RestartWith(v, withRepair); err != nil {
		t.Fatalf("restart with repair: %v", err)
	}
	g, _, err := c.Coord().Group(ctx, "g1")
	if err != nil || slices.Contains(g.ISR, id) || len(g.ISR) != 2 || g.Epoch != g0.Epoch+1 || g.Primary != g0.Primary {
		t.Fatalf("group after the repairing start %+v, %v; want %s out of the ISR at epoch %d, primary unchanged", g, err, id, g0.Epoch+1)
	}
	during := keys("during", 20)
	put(t, cli, during...)
	c.Heal(v, p)
	g = c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 3 })
	handover(t, c, c.NameOf(g.Primary), v)
	mustGet(t, cli, append(before, during...)...)
}
