package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

// Slot migrations under faults, with real processes and ZooKeeper
// (docs/migration.md, "Failure cases"): the source's primary, the
// target's primary and the coordinator leader SIGKILLed in each phase of
// a migration while writers run on the moving slots; and a source that
// corrupts its copy (the data node's test fault hook), caught by the
// digests.

const (
	// crashKeys small keys, fewer than the acceptance test's: this test
	// copies at 1 MB/s, nine times over.
	crashKeys = 20000
	padKeys   = 1000    // pad-0000 …, 4 KiB each: ~2 MB moves with each half of the slots
	padBytes  = 4 << 10 // so that a copy at 1 MB/s lasts about 2 s
)

// migrationSettled bounds how long after a kill the migration in flight
// must have left the table, moved or aborted: the session timeout for the
// failover, plus the rest of a copy at 1 MB/s and the hold, on a loaded
// machine.
const migrationSettled = sessionTimeout + 10*time.Second

// TestMigrationCrashPoints kills, one after the other in one cluster of two
// groups of two, the source group's primary, the target group's primary
// and the coordinator leader, each in the copy, in the hold and after the
// switch before the cleanup, of a migration moving half of the slots back
// and forth while writers run on them; the killed process is restarted
// each time. Each migration moves or aborts within the session timeout
// plus a few seconds, the slot table never shows a slot without a known
// owner or a migration's slots owned by the wrong side, no client call
// fails and every acknowledged write reads back.
func TestMigrationCrashPoints(t *testing.T) {
	tc := newTestCluster(t)
	coords := []*proc{tc.coordinator("coord-1"), tc.coordinator("coord-2")}
	for _, g := range []string{"g1", "g2"} {
		for _, m := range []string{"a", "b"} {
			tc.dataNode("data-"+g+m, g, "--max-lag", "1s")
		}
	}
	cl := tc.coordCluster()
	tc.waitServing(cl, 60*time.Second)
	fullGroups := func() {
		for _, g := range []string{"g1", "g2"} {
			tc.waitGroup(cl, g, time.Minute, func(g *coord.Group) bool { return len(g.ISR) == 2 })
		}
	}
	fullGroups()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := tc.client(cl)
	putMigrationKeys(t, ctx, c, crashKeys)
	parallel(t, 16, padKeys, func(i int) error { return c.Put(ctx, padKey(i), padValue(i)) })

	sw := watchSlots(t, cl, "g1", "g2")
	// The planner moves the highest slots: tag keys there, and elsewhere.
	table, _, err := cl.SlotTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	high := map[int]bool{}
	for s := len(table.Owners) / 2; s < len(table.Owners); s++ {
		high[s] = true
	}
	w := startMigrationWriters(t, c, 4, taggedKeys(len(table.Owners), high, 40))

	for _, phase := range []coord.MigrationState{coord.MigrationCopy, coord.MigrationHold, coord.MigrationCleanup} {
		for _, victim := range []string{"source", "target", "coordinator"} {
			hit := false
			for try := 1; try <= 2 && !hit; try++ {
				hit = crashMigration(t, ctx, tc, cl, sw, coords, victim, phase)
				fullGroups()
			}
			if !hit {
				t.Errorf("never saw a migration in %s to kill the %s in", phase, victim)
			}
		}
	}

	w.halt()
	if len(w.failed) > 0 {
		t.Errorf("%d writer calls failed, first: %s", len(w.failed), w.failed[0])
	}
	checkMigratedData(t, ctx, tc, c, cl, w, crashKeys)
	for i := range padKeys {
		if v, err := c.Get(ctx, padKey(i)); err != nil || !bytes.Equal(v, padValue(i)) {
			t.Fatalf("%s reads %d bytes, %v", padKey(i), len(v), err)
		}
	}
	sw.check(t)
}

func padKey(i int) []byte { return []byte(fmt.Sprintf("pad-%04d", i)) }

func padValue(i int) []byte {
	return bytes.Repeat([]byte{byte('a' + i%26)}, padBytes)
}

// crashMigration moves half of the slots between g1 and g2 (a drain of g2
// when it owns slots, else a rebalance) at 1 MB/s and SIGKILLs victim
// ("source", "target" or "coordinator") once the migration is in phase;
// then it restarts the victim and waits for the rebalance to finish. It
// reports false when the migration ended before it was seen in phase.
func crashMigration(t *testing.T, ctx context.Context, tc *testCluster, cl *coord.Cluster, sw *slotWatch, coords []*proc, victim string, phase coord.MigrationState) bool {
	t.Helper()
	table, _, err := cl.SlotTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"admin", "rebalance", "--rate", "1"}
	from, to := "g1", "g2"
	if len(table.SlotsOf("g2")) > 0 {
		args = []string{"admin", "drain", "--group", "g2", "--rate", "1"}
		from, to = "g2", "g1"
	} else if _, stderr, code := tc.cli(nil, "admin", "group", "weight", "g2", "1"); code != 0 {
		t.Fatalf("admin group weight g2 1: exit %d: %s", code, stderr)
	}
	var victimProc *proc
	switch victim {
	case "source", "target":
		group := map[string]string{"source": from, "target": to}[victim]
		g, _, err := cl.Group(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		victimProc = tc.procOf(g.Primary)
	default:
		victimProc = leaderProc(t, cl, coords)
	}

	finished := make(chan struct{})
	var result string
	var code int
	go func() {
		defer close(finished)
		var stdout, stderr string
		stdout, stderr, code = runCLIWithin(t, 4*time.Minute, nil, append([]string{"--zk", tc.zk.Addr(), "--cluster", tc.name,
			"--timeout", "20s"}, args...)...)
		result = fmt.Sprintf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}()
	m := sw.waitMigration(finished, func(m *coord.Migration) bool {
		return m.From == from && m.To == to && m.State == phase
	})
	if m != nil && phase == coord.MigrationCopy {
		// Into the copy, not at its very start.
		time.Sleep(300 * time.Millisecond)
	}
	hit := m != nil
	if hit {
		killedAt := time.Now()
		victimProc.Kill()
		now, _, err := cl.SlotTable(ctx)
		if err != nil {
			t.Fatal(err)
		}
		state := "gone"
		if cur := now.Migration(m.ID); cur != nil {
			state = fmt.Sprintf("%s attempt %d", cur.State, cur.Attempt)
		}
		t.Logf("%s %s→%s: killed the %s (%s) in %s; right after the kill the migration is %s",
			m.ID, from, to, victim, victimProc.Name, phase, state)
		restartVictim(t, ctx, tc, cl, victimProc, victim, map[string]string{"source": from, "target": to}[victim])
		eventually(t, migrationSettled, func() error {
			if cur := sw.latestTable().Migration(m.ID); cur != nil {
				return fmt.Errorf("migration %s still %s (attempt %d, error %q) %s after the kill",
					m.ID, cur.State, cur.Attempt, cur.Error, time.Since(killedAt).Round(time.Millisecond))
			}
			return nil
		})
		rec, err := cl.FinishedMigration(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		outcome := "moved the slots"
		if !rec.Moved() {
			outcome = "aborted: " + rec.Error
		}
		t.Logf("%s %s %s after the kill (attempt %d)", m.ID, outcome, time.Since(killedAt).Round(time.Millisecond), rec.Attempt)
	} else {
		t.Logf("the %s→%s migration ended before it was seen in %s", from, to, phase)
	}
	select {
	case <-finished:
	case <-ctx.Done():
		t.Fatal("the rebalance did not finish")
	}
	if code != 0 {
		t.Fatalf("%v: exit %d\n%s", args, code, result)
	}
	return hit
}

// restartVictim waits until the killed process's role has passed to
// another (the group's primary, the coordinators' lead), then starts it
// again.
func restartVictim(t *testing.T, ctx context.Context, tc *testCluster, cl *coord.Cluster, p *proc, victim, group string) {
	t.Helper()
	if victim == "coordinator" {
		eventually(t, sessionTimeout+15*time.Second, func() error {
			infos, err := cl.Coordinators(ctx)
			if err == nil && (len(infos) == 0 || infos[0].Addr == p.addr) {
				err = fmt.Errorf("no other coordinator leads: %v", infos)
			}
			return err
		})
	} else {
		id := nodeIDOf(t, p)
		tc.waitGroup(cl, group, sessionTimeout+15*time.Second, func(g *coord.Group) bool { return g.Primary != id && g.Primary != "" })
	}
	tc.restart(p)
}

// TestMigrationDigestMismatchAborts starts the source group's data node
// with the test fault hook (THUNDER_TEST_MIGRATE_FAULT: "drop" leaves the
// first record of every copy stream out, "flip" changes its value): the
// migration aborts
// with "digest mismatch slot N", kept in the history (admin zk
// migrations/ID); once the rebalance is cancelled the target owns none of the
// slots (it never did) and the source still serves every key.
func TestMigrationDigestMismatchAborts(t *testing.T) {
	for _, fault := range []string{"drop", "flip"} {
		t.Run(fault, func(t *testing.T) {
			tc := newTestCluster(t)
			tc.coordinator("coord-1")
			// The hook is read once when the node starts; only g1's node
			// gets it.
			t.Setenv("THUNDER_TEST_MIGRATE_FAULT", fault)
			tc.dataNode("data-g1", "g1")
			if err := os.Unsetenv("THUNDER_TEST_MIGRATE_FAULT"); err != nil {
				t.Fatal(err)
			}
			cl := tc.coordCluster()
			tc.waitServing(cl, 60*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			c := tc.client(cl)
			const keys = 2000
			parallel(t, 32, keys, func(i int) error {
				return c.Put(ctx, []byte(fmt.Sprintf("k-%05d", i)), []byte(fmt.Sprintf("v-%05d", i)))
			})
			tc.dataNode("data-g2", "g2")
			tc.waitGroup(cl, "g2", time.Minute, func(g *coord.Group) bool { return len(g.ISR) == 1 })
			sw := watchSlots(t, cl, "g1", "g2")

			finished := make(chan struct{})
			var out string
			go func() {
				defer close(finished)
				stdout, stderr, code := runCLIWithin(t, 2*time.Minute, nil, "--zk", tc.zk.Addr(), "--cluster", tc.name,
					"--timeout", "20s", "admin", "rebalance")
				out = fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}()
			// The hook corrupts the first record of every stream the node
			// serves, so an import that reconnects (the pipelined importer
			// does when the source falls silent or a write fails) is
			// corrupted again, and so is the move's next try: cancel the
			// rebalance once the first one aborted.
			var rec coord.MigrationRecord
			eventually(t, time.Minute, func() error {
				hist, err := cl.MigrationHistory(ctx)
				if err != nil {
					return err
				}
				for _, r := range hist {
					if strings.HasPrefix(r.Error, "digest mismatch slot ") {
						rec = r
						return nil
					}
				}
				return fmt.Errorf("no migration aborted on a digest mismatch: %+v", hist)
			})
			if _, stderr, code := tc.cli(nil, "admin", "rebalance", "--cancel"); code != 0 {
				t.Fatalf("admin rebalance --cancel: exit %d: %s", code, stderr)
			}
			select {
			case <-finished:
			case <-ctx.Done():
				t.Fatal("admin rebalance did not end after --cancel")
			}
			t.Logf("migration %s (slots %d-%d) aborted: %q; admin rebalance: %s", rec.ID, rec.First, rec.Last, rec.Error, out)
			if rec.Moved() || rec.From != "g1" || rec.To != "g2" {
				t.Errorf("history record %+v, want an abort of a move from g1 to g2", rec)
			}

			eventually(t, 30*time.Second, func() error {
				if tab := sw.latestTable(); len(tab.Migrations) > 0 {
					return fmt.Errorf("migrations in flight after the cancel: %+v", tab.Migrations)
				}
				return nil
			})
			// The move is tried again at once, and the retry was cancelled:
			// admin slots shows that one as the last finished; the
			// history keeps the abort.
			if stdout, _, code := tc.cli(nil, "admin", "zk", "-o", "json", "migrations/"+rec.ID); code != 0 || !strings.Contains(stdout, rec.Error) {
				t.Errorf("admin zk migrations/%s does not show %q: exit %d\n%s", rec.ID, rec.Error, code, stdout)
			}
			if n := len(sw.latestTable().SlotsOf("g2")); n > 0 {
				t.Errorf("g2 owns %d slots after the aborted move", n)
			}
			sw.check(t)
			if sw.everOwned("g2") {
				t.Error("g2 owned slots at some point")
			}
			for i := range keys {
				k := fmt.Sprintf("k-%05d", i)
				if v, err := c.Get(ctx, []byte(k)); err != nil || string(v) != fmt.Sprintf("v-%05d", i) {
					t.Fatalf("%s reads %q, %v", k, v, err)
				}
			}
			if n, err := ownersKeyCount(ctx, cl); err != nil || n != keys {
				t.Errorf("the source counts %d keys (%v), want %d", n, err, keys)
			}
		})
	}
}

// slotWatch follows the slot table through a ZooKeeper watch, checks every
// version it sees — each slot owned by one of the known groups, a
// migration's slots owned by its source until the switch and by its
// target from then on, the version never going back — and keeps the
// latest for the tests' waits.
type slotWatch struct {
	groups []string
	mu     sync.Mutex
	latest *coord.SlotTable
	seen   int
	owned  map[string]bool // groups seen owning a slot
	bad    []string
}

func watchSlots(t *testing.T, cl *coord.Cluster, groups ...string) *slotWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sw := &slotWatch{groups: groups, owned: map[string]bool{}}
	tab, ch, err := cl.WatchSlotTable(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	sw.observe(tab)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for tab := range ch {
				sw.observe(tab)
			}
			// The watch ended (session in doubt, or the test is over):
			// watch again.
			for ctx.Err() == nil {
				if tab, ch, err = cl.WatchSlotTable(ctx); err == nil {
					sw.observe(tab)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return sw
}

func (sw *slotWatch) observe(tab *coord.SlotTable) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.seen++
	if sw.latest != nil && tab.Version < sw.latest.Version {
		sw.bad = append(sw.bad, fmt.Sprintf("table version went back from %d to %d", sw.latest.Version, tab.Version))
	}
	for s, owner := range tab.Owners {
		if !slices.Contains(sw.groups, owner) {
			sw.bad = append(sw.bad, fmt.Sprintf("version %d: slot %d owned by %q", tab.Version, s, owner))
		}
		sw.owned[owner] = true
	}
	for _, m := range tab.Migrations {
		want := m.From
		if m.State == coord.MigrationCleanup {
			want = m.To
		}
		for s := m.First; s <= m.Last; s++ {
			if tab.Owners[s] != want {
				sw.bad = append(sw.bad, fmt.Sprintf("version %d: slot %d owned by %s in migration %s (%s→%s, %s)",
					tab.Version, s, tab.Owners[s], m.ID, m.From, m.To, m.State))
			}
		}
	}
	sw.latest = tab
}

func (sw *slotWatch) latestTable() *coord.SlotTable {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.latest
}

func (sw *slotWatch) everOwned(group string) bool {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.owned[group]
}

// check fails the test if a table version broke the rules.
func (sw *slotWatch) check(t *testing.T) {
	t.Helper()
	sw.mu.Lock()
	defer sw.mu.Unlock()
	t.Logf("watched %d slot table versions", sw.seen)
	if len(sw.bad) > 0 {
		t.Errorf("%d slot table versions broke the ownership rules, first: %s", len(sw.bad), sw.bad[0])
	}
}

// waitMigration waits for a migration in the table that ok accepts and
// returns it; nil when stop is closed first.
func (sw *slotWatch) waitMigration(stop <-chan struct{}, ok func(*coord.Migration) bool) *coord.Migration {
	for {
		for _, m := range sw.latestTable().Migrations {
			if ok(&m) {
				return &m
			}
		}
		select {
		case <-stop:
			return nil
		case <-time.After(2 * time.Millisecond):
		}
	}
}
