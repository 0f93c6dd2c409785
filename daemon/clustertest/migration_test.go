package clustertest_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/clustertest"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// The tests of this file play the coordinator of a slot migration: they
// write the migration's states into the slot table themselves and read
// the primaries' reports, while writers keep writing the moving slots.

const migSlots = 16

// holdBound is how long a source holds requests before it releases the
// hold itself.
const holdBound = time.Second

// twoGroups starts a coordinator, a group g1 of n1, n2 owning every slot,
// then a group g2 of n3, n4 owning none.
func twoGroups(t *testing.T) *clustertest.Cluster {
	t.Helper()
	c := clustertest.New(t, clustertest.Options{Slots: migSlots, ReplicationFactor: 2})
	c.StartCoordinator("c1")
	c.StartNode("n1", "g1")
	c.StartNode("n2", "g1")
	c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 2 })
	c.WaitServing()
	c.StartNode("n3", "g2")
	c.StartNode("n4", "g2")
	c.WaitGroup("g2", func(g *coord.Group) bool { return len(g.ISR) == 2 })
	return c
}

// slotKeys returns n keys whose slots are in first..last.
func slotKeys(prefix string, first, last, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if s := coord.SlotOf([]byte(k), migSlots); s >= first && s <= last {
			out = append(out, k)
		}
	}
	return out
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// updateMigration changes migration id in the slot table with fn.
func updateMigration(t *testing.T, c *clustertest.Cluster, id string, fn func(*coord.SlotTable, *coord.Migration)) {
	t.Helper()
	_, err := c.Coord().UpdateSlotTable(ctxFor(t, 10*time.Second), func(tb *coord.SlotTable) error {
		m := tb.Migration(id)
		if m == nil {
			return fmt.Errorf("no migration %s", id)
		}
		fn(tb, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func startMigration(t *testing.T, c *clustertest.Cluster, m coord.Migration) {
	t.Helper()
	m.State, m.Since = coord.MigrationCopy, time.Now().UTC()
	_, err := c.Coord().UpdateSlotTable(ctxFor(t, 10*time.Second), func(tb *coord.SlotTable) error {
		tb.Migrations = append(tb.Migrations, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func removeMigration(t *testing.T, c *clustertest.Cluster, id string) {
	t.Helper()
	_, err := c.Coord().UpdateSlotTable(ctxFor(t, 10*time.Second), func(tb *coord.SlotTable) error {
		tb.Migrations = slices.DeleteFunc(tb.Migrations, func(m coord.Migration) bool { return m.ID == id })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func migrationOf(t *testing.T, c *clustertest.Cluster, id string) coord.Migration {
	t.Helper()
	tb, _, err := c.Coord().SlotTable(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m := tb.Migration(id)
	if m == nil {
		t.Fatalf("no migration %s in the slot table", id)
	}
	return *m
}

// report is group's primary's report on migration id, nil if none.
func report(ctx context.Context, c *clustertest.Cluster, group, id string) *wire.MigrationStatus {
	g, _, err := c.Coord().Group(ctx, group)
	if err != nil || g.Primary == "" {
		return nil
	}
	nodes, err := c.Coord().Nodes(ctx)
	if err != nil {
		return nil
	}
	for _, n := range nodes {
		if n.ID != g.Primary {
			continue
		}
		st, err := nodeclient.Nodes{}.NodeStatus(ctx, n.Addr)
		if err != nil {
			return nil
		}
		for _, r := range st.Migrations {
			if r.Id == id {
				return r
			}
		}
	}
	return nil
}

// waitReport waits until group's primary reports on migration id as ok says.
func waitReport(c *clustertest.Cluster, group, id string, ok func(*wire.MigrationStatus) bool) *wire.MigrationStatus {
	var last *wire.MigrationStatus
	c.Eventually(fmt.Sprintf("%s reports on %s", group, id), func(ctx context.Context) bool {
		r := report(ctx, c, group, id)
		if r != nil && ok(r) {
			last = r
			return true
		}
		return false
	})
	return last
}

func phase(p string) func(*wire.MigrationStatus) bool {
	return func(r *wire.MigrationStatus) bool { return r.Phase == p }
}

// freeze holds migration id until the source reports frozen at F and the
// target imported through F, and returns both reports. A hold the source
// released (it ran past its bound on a loaded machine) is tried again.
func freeze(t *testing.T, c *clustertest.Cluster, id string) (src, dst *wire.MigrationStatus, attempt int) {
	t.Helper()
	for try := 0; try < 10; try++ {
		waitReport(c, "g2", id, phase("caught-up"))
		attempt = migrationOf(t, c, id).Attempt
		updateMigration(t, c, id, func(_ *coord.SlotTable, m *coord.Migration) {
			m.State, m.Since = coord.MigrationHold, time.Now().UTC()
		})
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			src = report(ctx, c, "g1", id)
			dst = report(ctx, c, "g2", id)
			cancel()
			if src != nil && src.Phase == "frozen" && dst != nil && dst.ImportedSeq >= src.FrozenSeq && len(dst.Digests) > 0 {
				return src, dst, attempt
			}
			if m := migrationOf(t, c, id); m.State != coord.MigrationHold || m.Attempt != attempt {
				break // released: hold again
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("hold %d of %s did not freeze in time; again", attempt, id)
		c.Eventually("the hold is released", func(ctx context.Context) bool {
			m := migrationOf(t, c, id)
			return m.State == coord.MigrationCopy
		})
	}
	t.Fatalf("migration %s never froze", id)
	return nil, nil, 0
}

// switchSlots is the coordinator's switch: owners become To, state cleanup,
// only if the migration is still in hold with the same attempt.
func switchSlots(t *testing.T, c *clustertest.Cluster, id string, attempt int) bool {
	t.Helper()
	switched := false
	_, err := c.Coord().UpdateSlotTable(ctxFor(t, 10*time.Second), func(tb *coord.SlotTable) error {
		m := tb.Migration(id)
		switched = m != nil && m.State == coord.MigrationHold && m.Attempt == attempt
		if !switched {
			return coord.ErrNoChange
		}
		for s := m.First; s <= m.Last; s++ {
			tb.Owners[s] = m.To
		}
		m.State, m.Since = coord.MigrationCleanup, time.Now().UTC()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return switched
}

// complete plays the rest of migration id as the coordinator does: hold
// until frozen, compare the digests, switch, wait for the source's
// cleanup, take the migration out of the table. It returns the source's
// frozen report.
func complete(t *testing.T, c *clustertest.Cluster, id string) *wire.MigrationStatus {
	t.Helper()
	src, dst, attempt := freeze(t, c, id)
	if !sameDigests(src.Digests, dst.Digests) {
		t.Fatalf("digests differ: source %v, target %v", src.Digests, dst.Digests)
	}
	if !switchSlots(t, c, id, attempt) {
		t.Fatal("the hold was released before the switch")
	}
	waitReport(c, "g1", id, phase("dropped"))
	removeMigration(t, c, id)
	return src
}

// killPrimary kills group's primary, waits for a successor and returns the
// killed node's name.
func killPrimary(c *clustertest.Cluster, group string) string {
	old := c.Primary(group)
	oldID := c.Node(old).ID()
	c.Kill(old)
	c.WaitGroup(group, func(g *coord.Group) bool { return g.Primary != "" && g.Primary != oldID })
	return old
}

func sameDigests(a, b []*wire.SlotDigest) bool {
	return slices.EqualFunc(a, b, func(x, y *wire.SlotDigest) bool {
		return x.Slot == y.Slot && x.Keys == y.Keys && x.Bytes == y.Bytes && x.Hash == y.Hash
	})
}

// writers keep overwriting their keys, one goroutine per share of them,
// each key's writes in order, and remember the last acknowledged value.
type writers struct {
	t      *testing.T
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  map[string]string
	errs   []error
	writes int
	// slowest is the longest a write took.
	slowest time.Duration
}

func startWriters(t *testing.T, cli *client.Client, keys []string, n int) *writers {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writers{t: t, cancel: cancel, acked: map[string]string{}}
	t.Cleanup(w.stop)
	for i := range n {
		var mine []string
		for j := i; j < len(keys); j += n {
			mine = append(mine, keys[j])
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for round := 0; ctx.Err() == nil; round++ {
				for _, k := range mine {
					v := fmt.Sprintf("%s-r%d", k, round)
					wctx, wcancel := context.WithTimeout(context.Background(), 15*time.Second)
					start := time.Now()
					err := cli.Put(wctx, []byte(k), []byte(v))
					took := time.Since(start)
					wcancel()
					w.mu.Lock()
					w.slowest = max(w.slowest, took)
					if err != nil {
						w.errs = append(w.errs, fmt.Errorf("put %s: %w", k, err))
					} else {
						w.acked[k] = v
						w.writes++
					}
					w.mu.Unlock()
					if err != nil || ctx.Err() != nil {
						return
					}
				}
			}
		}()
	}
	return w
}

func (w *writers) stop() {
	w.cancel()
	w.wg.Wait()
}

// check stops the writers and fails the test if any write failed or an
// acknowledged value does not read back.
func (w *writers) check(cli *client.Client) {
	w.t.Helper()
	w.stop()
	if len(w.errs) > 0 {
		w.t.Fatalf("%d writes failed during the migration, first: %v", len(w.errs), w.errs[0])
	}
	ctx := ctxFor(w.t, 30*time.Second)
	for k, v := range w.acked {
		got, err := cli.Get(ctx, []byte(k))
		if err != nil || string(got) != v {
			w.t.Fatalf("get %s = %q, %v; want the last acknowledged %q", k, got, err, v)
		}
	}
	w.t.Logf("%d acknowledged writes, all read back", w.writes)
}

// scanner scans prefix over and over, expecting want keys each time.
type scanner struct {
	cancel context.CancelFunc
	done   chan struct{}
	scans  int
	err    error
}

func startScanner(cli *client.Client, prefix string, want int) *scanner {
	ctx, cancel := context.WithCancel(context.Background())
	s := &scanner{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			n := 0
			sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
			err := cli.Scan(sctx, client.ScanOptions{Prefix: []byte(prefix)}, func(k, v []byte) error { n++; return nil })
			scancel()
			if err == nil && n != want {
				err = fmt.Errorf("scan %q found %d keys, want %d", prefix, n, want)
			}
			if err != nil {
				s.err = err
				return
			}
			s.scans++
		}
	}()
	return s
}

func (s *scanner) stop() (int, error) {
	s.cancel()
	<-s.done
	return s.scans, s.err
}

// keysIn sums what the named data nodes' stores hold in slots.
func keysIn(t *testing.T, c *clustertest.Cluster, slots []int, names ...string) uint64 {
	t.Helper()
	var sum uint64
	for _, n := range names {
		k, err := c.Node(n).SlotKeys(ctxFor(t, 10*time.Second), slots)
		if err != nil {
			t.Fatal(err)
		}
		sum += k
	}
	return sum
}

func waitKeysIn(t *testing.T, c *clustertest.Cluster, what string, slots []int, want func(uint64) bool, names ...string) {
	t.Helper()
	c.Eventually(what, func(ctx context.Context) bool {
		for _, n := range names {
			k, err := c.Node(n).SlotKeys(ctx, slots)
			if err != nil || !want(k) {
				return false
			}
		}
		return true
	})
}

func isZero(k uint64) bool { return k == 0 }

// A migration copies the slots to the target while writers write them,
// the hold freezes the source with digests equal to the target's, the
// switch sends every request to the target, and cleanup drops the
// source's copy: no write fails and every acknowledged write reads back.
func TestMigrationMovesSlots(t *testing.T) {
	c := twoGroups(t)
	cli := c.Client()
	moving := slotKeys("m", 0, 3, 200)
	put(t, cli, moving...)
	put(t, cli, slotKeys("stay", 4, 15, 50)...)
	w := startWriters(t, cli, slotKeys("w", 0, 3, 40), 4)
	sc := startScanner(cli, "m-", len(moving))
	m := coord.Migration{ID: "m1", From: "g1", To: "g2", First: 0, Last: 3}
	startMigration(t, c, m)
	if src := complete(t, c, "m1"); len(src.Digests) != 4 {
		t.Fatalf("source digests %v; want one per slot", src.Digests)
	}
	slots := m.Slots()
	waitKeysIn(t, c, "the source group holds none of the moved slots", slots, isZero, "n1", "n2")
	put(t, cli, slotKeys("after", 0, 3, 20)...)
	w.check(cli)
	if scans, err := sc.stop(); err != nil || scans == 0 {
		t.Fatalf("scans during the migration: %d, %v", scans, err)
	}
	mustGet(t, cli, moving...)
	mustGet(t, cli, slotKeys("after", 0, 3, 20)...)
	if k := keysIn(t, c, slots, c.Primary("g2")); k < 260 {
		t.Fatalf("target primary holds %d keys of the moved slots; want at least 260", k)
	}
	// Status counts only owned slots.
	st, err := nodeclient.Nodes{}.NodeStatus(ctxFor(t, 5*time.Second), c.Node(c.Primary("g1")).Addr())
	if err != nil {
		t.Fatal(err)
	}
	if want := keysIn(t, c, []int{4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, c.Primary("g1")); st.Keys != want {
		t.Fatalf("source status keys %d; want %d (its owned slots)", st.Keys, want)
	}
}

// An aborted migration leaves nothing on the target.
func TestMigrationAbortDropsTarget(t *testing.T) {
	c := twoGroups(t)
	cli := c.Client()
	put(t, cli, slotKeys("m", 4, 7, 100)...)
	w := startWriters(t, cli, slotKeys("w", 4, 7, 20), 2)
	m := coord.Migration{ID: "m2", From: "g1", To: "g2", First: 4, Last: 7}
	startMigration(t, c, m)
	waitReport(c, "g2", "m2", phase("caught-up"))
	if k := keysIn(t, c, m.Slots(), c.Primary("g2")); k < 100 {
		t.Fatalf("target holds %d keys of the slots while caught up; want at least 100", k)
	}
	// Target reports keep the slots hidden: its status counts none of them.
	updateMigration(t, c, "m2", func(_ *coord.SlotTable, m *coord.Migration) {
		m.State, m.Error = coord.MigrationAbort, "test abort"
	})
	waitReport(c, "g2", "m2", phase("dropped"))
	waitKeysIn(t, c, "the target holds none of the slots", m.Slots(), isZero, "n3", "n4")
	removeMigration(t, c, "m2")
	w.check(cli)
}

// A hold the switch never comes for is released by the source itself
// after about a second: held requests are then served, and the
// migration is back in copy with its attempt counted. Requests for other
// slots are served during the hold.
func TestMigrationHoldReleasedBySource(t *testing.T) {
	c := twoGroups(t)
	cli := c.Client()
	w := startWriters(t, cli, slotKeys("w", 8, 11, 20), 4)
	startMigration(t, c, coord.Migration{ID: "m3", From: "g1", To: "g2", First: 8, Last: 11})
	waitReport(c, "g2", "m3", phase("caught-up"))
	updateMigration(t, c, "m3", func(_ *coord.SlotTable, m *coord.Migration) {
		m.State, m.Since = coord.MigrationHold, time.Now().UTC()
	})
	// Requests for other slots, on the same stream, are served meanwhile,
	// and the held ones keep their keys and values: the stream decodes
	// each batch into the memory of the one before.
	waitReport(c, "g1", "m3", func(r *wire.MigrationStatus) bool { return r.Phase == "held" || r.Phase == "frozen" })
	put(t, cli, slotKeys("free", 0, 7, 20)...)
	mustGet(t, cli, slotKeys("free", 0, 7, 20)...)
	c.Eventually("the source releases the hold", func(ctx context.Context) bool {
		m := migrationOf(t, c, "m3")
		return m.State == coord.MigrationCopy && m.Attempt == 1 && strings.Contains(m.Error, "hold ran past")
	})
	// Requests go on after the release.
	put(t, cli, slotKeys("after", 8, 11, 10)...)
	w.check(cli)
	// The writes in flight when the hold began waited for its release.
	if w.slowest < holdBound/2 {
		t.Fatalf("the slowest write took %s; the hold should have held one for about %s", w.slowest, holdBound)
	}
	removeMigration(t, c, "m3")
}

// A primary of either group killed mid-copy: the target's successor
// resumes from the committed mark (no second snapshot); after the source's,
// the target continues from the source's new primary. The migration then
// completes with every write kept.
func TestMigrationFailover(t *testing.T) {
	for _, side := range []struct{ name, group string }{{"target", "g2"}, {"source", "g1"}} {
		t.Run(side.name, func(t *testing.T) {
			c := twoGroups(t)
			cli := c.Client()
			put(t, cli, slotKeys("m", 0, 7, 300)...)
			w := startWriters(t, cli, slotKeys("w", 0, 7, 20), 2)
			startMigration(t, c, coord.Migration{ID: "m4", From: "g1", To: "g2", First: 0, Last: 7})
			waitReport(c, "g2", "m4", phase("caught-up"))
			old := killPrimary(c, side.group)
			// This role's own copy counts the log records only, not the 300
			// keys of a snapshot.
			r := waitReport(c, "g2", "m4", phase("caught-up"))
			if side.group == "g2" && (!r.SnapshotDone || r.Keys >= 300) {
				t.Fatalf("new target primary report %+v; want it resumed from the mark, not copied again", r)
			}
			put(t, cli, slotKeys("during", 0, 7, 50)...)
			c.Restart(old)
			complete(t, c, "m4")
			w.check(cli)
			mustGet(t, cli, slotKeys("m", 0, 7, 300)...)
			mustGet(t, cli, slotKeys("during", 0, 7, 50)...)
		})
	}
}

// The source's primary killed while it holds: held requests go to its
// successor, which holds them too until the switch or its own release, and
// the migration completes with every write kept.
func TestMigrationSourceFailoverInHold(t *testing.T) {
	c := twoGroups(t)
	cli := c.Client()
	put(t, cli, slotKeys("m", 0, 7, 300)...)
	w := startWriters(t, cli, slotKeys("w", 0, 7, 20), 4)
	startMigration(t, c, coord.Migration{ID: "m7", From: "g1", To: "g2", First: 0, Last: 7})
	waitReport(c, "g2", "m7", phase("caught-up"))
	updateMigration(t, c, "m7", func(_ *coord.SlotTable, m *coord.Migration) {
		m.State, m.Since = coord.MigrationHold, time.Now().UTC()
	})
	waitReport(c, "g1", "m7", func(r *wire.MigrationStatus) bool { return r.Phase == "held" || r.Phase == "frozen" })
	killPrimary(c, "g1")
	complete(t, c, "m7")
	w.check(cli)
	mustGet(t, cli, slotKeys("m", 0, 7, 300)...)
}

// A source that corrupts one record of the copy (the test fault hook)
// makes the digests differ at the hold.
func TestMigrationFaultChangesDigests(t *testing.T) {
	for _, fault := range []string{"drop", "flip"} {
		t.Run(fault, func(t *testing.T) {
			t.Setenv("THUNDER_TEST_MIGRATE_FAULT", fault)
			c := twoGroups(t)
			cli := c.Client()
			put(t, cli, slotKeys("m", 0, 3, 50)...)
			startMigration(t, c, coord.Migration{ID: "m6", From: "g1", To: "g2", First: 0, Last: 3})
			src, dst, _ := freeze(t, c, "m6")
			if sameDigests(src.Digests, dst.Digests) {
				t.Fatalf("digests equal with a corrupted copy: %v", src.Digests)
			}
		})
	}
}
