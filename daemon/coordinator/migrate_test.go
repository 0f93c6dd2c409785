package coordinator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/internal/poll"
	"github.com/thunderyurts/thunderyurts/wire"
)

// The driver's tests play both primaries: the test sets what each reports
// about the migration (through the injected NodeStatus) and checks what the
// leader writes to the slot table, the plan and the history.

// fastMigrations are settings that make the driver's timeouts short.
var fastMigrations = Config{MigrationPoll: 5 * time.Millisecond, HoldTimeout: time.Hour, CopyStall: time.Hour, RetryDelay: 10 * time.Millisecond}

// migrationCluster starts a coordinator with cfg's migration settings and
// two groups, g1 (primary p1) and g2 (primary p2), owning 8 of the 16
// slots each.
func migrationCluster(t *testing.T, cfg Config) *fakeCluster {
	return migrationClusterProbed(t, cfg, nil)
}

// migrationClusterProbed is migrationCluster with the coordinator asking
// probe for the nodes' reports (nil: f.probe, what f.report set).
func migrationClusterProbed(t *testing.T, cfg Config, probe func(*fakeCluster) func(context.Context, string) (*wire.NodeStatus, error)) *fakeCluster {
	f := newFakeCluster(t)
	var p func(context.Context, string) (*wire.NodeStatus, error)
	if probe != nil {
		p = probe(f)
	}
	f.coordinatorWith("c1", p, cfg)
	f.register("p1", "g1")
	f.register("p2", "g2")
	f.waitTable("slots assigned", func(t *coord.SlotTable) bool {
		return len(t.SlotsOf("g1")) == 8 && len(t.SlotsOf("g2")) == 8
	})
	f.report("p1")
	f.report("p2")
	return f
}

// report sets what node id reports: its part in migrations, from a table
// copy newer than any.
func (f *fakeCluster) report(id string, ms ...*wire.MigrationStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.positions[addrOf(id)] = &wire.NodeStatus{Id: id, TableVersion: 1 << 40, Migrations: ms}
}

func (f *fakeCluster) waitTable(what string, ok func(*coord.SlotTable) bool) *coord.SlotTable {
	f.t.Helper()
	var last *coord.SlotTable
	poll.Until(f.t, waitFor, what, func() bool {
		t, _, err := f.observer.SlotTable(context.Background())
		if err != nil {
			return false
		}
		last = t
		return ok(t)
	})
	return last
}

func (f *fakeCluster) waitPlan(what string, ok func(*coord.RebalancePlan) bool) *coord.RebalancePlan {
	f.t.Helper()
	var last *coord.RebalancePlan
	poll.Until(f.t, waitFor, what, func() bool {
		p, err := f.observer.RebalancePlan(context.Background())
		if err != nil {
			return false
		}
		last = p
		return ok(p)
	})
	return last
}

// startPlan stores a plan of moves and waits for its first migration.
func (f *fakeCluster) startPlan(moves ...coord.Move) *coord.Migration {
	f.t.Helper()
	if _, err := f.observer.StartRebalance(context.Background(), coord.RebalancePlan{Moves: moves, RateMBps: 3}); err != nil {
		f.t.Fatal(err)
	}
	return f.waitMigration("the first move starts", func(m *coord.Migration) bool { return m.State == coord.MigrationCopy })
}

// waitMigration waits until the (single) migration in the table satisfies ok.
func (f *fakeCluster) waitMigration(what string, ok func(*coord.Migration) bool) *coord.Migration {
	f.t.Helper()
	t := f.waitTable(what, func(t *coord.SlotTable) bool { return len(t.Migrations) == 1 && ok(&t.Migrations[0]) })
	return &t.Migrations[0]
}

func (f *fakeCluster) waitNoMigration(what string) *coord.SlotTable {
	f.t.Helper()
	return f.waitTable(what, func(t *coord.SlotTable) bool { return len(t.Migrations) == 0 })
}

func target(id, phase string, imported, committed uint64, digests ...*wire.SlotDigest) *wire.MigrationStatus {
	return &wire.MigrationStatus{Id: id, Role: roleTarget, Phase: phase, ImportedSeq: imported, SourceCommitted: committed,
		SnapshotDone: phase != "copying", Keys: 10, Bytes: 100, Digests: digests}
}

func source(id, phase string, frozen uint64, digests ...*wire.SlotDigest) *wire.MigrationStatus {
	return &wire.MigrationStatus{Id: id, Role: roleSource, Phase: phase, FrozenSeq: frozen, Digests: digests}
}

func digests(first, last int, hash uint64) []*wire.SlotDigest {
	var out []*wire.SlotDigest
	for s := first; s <= last; s++ {
		out = append(out, &wire.SlotDigest{Slot: uint32(s), Keys: 2, Bytes: 20, Hash: hash + uint64(s)})
	}
	return out
}

// copy → hold when the target catches up → cleanup (owners switch) when
// the digests match at the source's freeze → gone, in the history, and
// the plan done, once the source dropped the slots. A freeze reported from
// a table older than the hold does not switch.
func TestMigrationStates(t *testing.T) {
	f := migrationCluster(t, fastMigrations)
	m := f.startPlan(coord.Move{From: "g1", To: "g2", First: 0, Last: 3})
	if m.From != "g1" || m.To != "g2" || m.First != 0 || m.Last != 3 || m.RateMBps != 3 {
		t.Fatalf("started %+v", m)
	}
	f.report("p2", target(m.ID, "copying", 0, 50))
	f.report("p2", target(m.ID, phaseCaughtUp, 50, 60))
	f.waitMigration("hold once the target caught up", func(m *coord.Migration) bool { return m.State == coord.MigrationHold })

	// Frozen, but reported from a table copy older than the hold.
	f.mu.Lock()
	f.positions[addrOf("p1")] = &wire.NodeStatus{Id: "p1", TableVersion: 1, Migrations: []*wire.MigrationStatus{source(m.ID, phaseFrozen, 70, digests(0, 3, 7)...)}}
	f.mu.Unlock()
	f.report("p2", target(m.ID, phaseCaughtUp, 70, 70, digests(0, 3, 7)...))
	time.Sleep(100 * time.Millisecond) // many polls
	if tb := f.waitTable("still held", func(*coord.SlotTable) bool { return true }); tb.Migrations[0].State != coord.MigrationHold {
		t.Fatalf("switched on a freeze reported from an older table: %+v", tb.Migrations[0])
	}

	f.report("p1", source(m.ID, phaseFrozen, 70, digests(0, 3, 7)...))
	tb := f.waitTable("switch", func(t *coord.SlotTable) bool {
		return len(t.Migrations) == 1 && t.Migrations[0].State == coord.MigrationCleanup
	})
	for s := range 4 {
		if tb.Owner(s) != "g2" {
			t.Fatalf("after the switch slot %d is owned by %s", s, tb.Owner(s))
		}
	}
	f.report("p1", source(m.ID, phaseDropped, 70))
	f.waitNoMigration("migration removed once the source dropped the slots")
	hist, err := f.observer.MigrationHistory(context.Background())
	if err != nil || len(hist) != 1 || hist[0].ID != m.ID || !hist[0].Moved() || hist[0].Keys != 10 {
		t.Fatalf("history = %+v, %v", hist, err)
	}
	p := f.waitPlan("plan done", func(p *coord.RebalancePlan) bool { return p.Done })
	if p.Moves[0].State != coord.MoveDone || p.Moves[0].Migration != m.ID {
		t.Fatalf("plan = %+v", p)
	}
}

// A digest mismatch aborts; once the target dropped what it staged the
// migration is gone, in the history with its error, and the move starts
// again as a new migration.
func TestMigrationDigestMismatchAborts(t *testing.T) {
	f := migrationCluster(t, fastMigrations)
	m := f.startPlan(coord.Move{From: "g1", To: "g2", First: 4, Last: 5})
	f.report("p2", target(m.ID, phaseCaughtUp, 9, 9))
	f.waitMigration("hold", func(m *coord.Migration) bool { return m.State == coord.MigrationHold })
	bad := digests(4, 5, 1)
	bad[1].Hash++
	f.report("p1", source(m.ID, phaseFrozen, 9, digests(4, 5, 1)...))
	f.report("p2", target(m.ID, phaseCaughtUp, 9, 9, bad...))
	a := f.waitMigration("abort", func(m *coord.Migration) bool { return m.State == coord.MigrationAbort })
	if !strings.HasPrefix(a.Error, "digest mismatch slot 5") {
		t.Fatalf("abort error %q", a.Error)
	}
	f.report("p2", target(m.ID, phaseDropped, 9, 9))
	f.report("p1")
	next := f.waitMigration("the move starts again", func(n *coord.Migration) bool { return n.ID != m.ID })
	if next.First != 4 || next.Last != 5 || next.State != coord.MigrationCopy {
		t.Fatalf("retry %+v", next)
	}
	rec, err := f.observer.FinishedMigration(context.Background(), m.ID)
	if err != nil || rec.Moved() || !strings.HasPrefix(rec.Error, "digest mismatch slot 5") {
		t.Fatalf("history of the aborted migration = %+v, %v", rec, err)
	}
	p := f.waitPlan("move retried", func(p *coord.RebalancePlan) bool { return p.Moves[0].Migration == next.ID })
	if p.Moves[0].Tries != 1 || p.Moves[0].State != coord.MoveRunning || p.Done {
		t.Fatalf("plan = %+v", p)
	}
}

// A hold that lasts past HoldTimeout (the source did not freeze) goes back
// to copy with the next attempt; a copy without progress past CopyStall
// is aborted.
func TestMigrationTimeouts(t *testing.T) {
	cfg := fastMigrations
	cfg.HoldTimeout, cfg.CopyStall = 200*time.Millisecond, 500*time.Millisecond
	f := migrationCluster(t, cfg)
	m := f.startPlan(coord.Move{From: "g2", To: "g1", First: 8, Last: 9})
	f.report("p1", target(m.ID, phaseCaughtUp, 5, 5))
	f.waitMigration("hold", func(m *coord.Migration) bool { return m.State == coord.MigrationHold })
	f.report("p1", target(m.ID, "copying", 5, 500)) // behind again: no new hold
	r := f.waitMigration("hold released", func(m *coord.Migration) bool { return m.State == coord.MigrationCopy })
	if r.Attempt != 1 || !strings.HasPrefix(r.Error, "hold ran past") {
		t.Fatalf("after the release: %+v", r)
	}
	a := f.waitMigration("a copy without progress aborts", func(m *coord.Migration) bool { return m.State == coord.MigrationAbort })
	if !strings.HasPrefix(a.Error, "copy made no progress") {
		t.Fatalf("abort error %q", a.Error)
	}
}

// After strictHoldAfter released holds, the driver holds only when the
// target trails by nothing.
func TestMigrationHoldsStrictlyAfterFailedHolds(t *testing.T) {
	f := migrationCluster(t, fastMigrations)
	m := f.startPlan(coord.Move{From: "g1", To: "g2", First: 0, Last: 0})
	for attempt := range strictHoldAfter {
		if _, err := f.observer.HoldMigration(context.Background(), m.ID, attempt); err != nil && !errors.Is(err, coord.ErrMigrationChanged) {
			t.Fatal(err)
		}
		f.waitMigration("hold", func(m *coord.Migration) bool { return m.State == coord.MigrationHold && m.Attempt == attempt })
		if _, err := f.observer.ReleaseHold(context.Background(), m.ID, attempt, "hold ran past 1s"); err != nil {
			t.Fatal(err)
		}
	}
	f.report("p2", target(m.ID, phaseCaughtUp, 99, 100))
	time.Sleep(100 * time.Millisecond) // many polls
	if got := f.waitMigration("copy", func(*coord.Migration) bool { return true }); got.State != coord.MigrationCopy {
		t.Fatalf("held with a lag after %d failed holds: %+v", strictHoldAfter, got)
	}
	f.report("p2", target(m.ID, phaseCaughtUp, 100, 100))
	f.waitMigration("hold without lag", func(m *coord.Migration) bool { return m.State == coord.MigrationHold })
}

// A migration no plan started is left alone.
func TestMigrationOutsideThePlanIsLeftAlone(t *testing.T) {
	f := migrationCluster(t, fastMigrations)
	m, err := f.observer.StartMigration(context.Background(), coord.Migration{From: "g1", To: "g2", First: 0, Last: 0})
	if err != nil {
		t.Fatal(err)
	}
	f.report("p2", target(m.ID, phaseCaughtUp, 5, 5))
	time.Sleep(100 * time.Millisecond) // many polls
	if got := f.waitMigration("copy", func(*coord.Migration) bool { return true }); got.State != coord.MigrationCopy {
		t.Fatalf("the driver moved a migration of no plan on: %+v", got)
	}
}

// A new leader continues a migration the old one started.
func TestMigrationSurvivesLeaderChange(t *testing.T) {
	f := migrationCluster(t, fastMigrations)
	c2, _ := f.coordinatorWith("c2", nil, fastMigrations)
	m := f.startPlan(coord.Move{From: "g1", To: "g2", First: 0, Last: 1})
	f.report("p2", target(m.ID, phaseCaughtUp, 3, 3, digests(0, 1, 5)...))
	f.waitMigration("hold", func(m *coord.Migration) bool { return m.State == coord.MigrationHold })
	f.coords[0].Close()
	poll.Until(t, waitFor, "c2 leads", c2.Leading)
	f.report("p1", source(m.ID, phaseFrozen, 3, digests(0, 1, 5)...))
	f.waitMigration("c2 switches", func(m *coord.Migration) bool { return m.State == coord.MigrationCleanup })
	f.report("p1", source(m.ID, phaseDropped, 3))
	f.waitNoMigration("c2 ends it")
	f.waitPlan("plan done", func(p *coord.RebalancePlan) bool { return p.Done && p.Moves[0].State == coord.MoveDone })
}

// The source releasing its hold races the driver's switch: exactly one
// wins, and a released hold never switches.
func TestMigrationSwitchAndReleaseRace(t *testing.T) {
	f := migrationCluster(t, fastMigrations)
	m := f.startPlan(coord.Move{From: "g1", To: "g2", First: 0, Last: 1})
	f.report("p2", target(m.ID, phaseCaughtUp, 3, 3, digests(0, 1, 5)...))
	f.waitMigration("hold", func(m *coord.Migration) bool { return m.State == coord.MigrationHold })
	f.report("p1", source(m.ID, phaseFrozen, 3, digests(0, 1, 5)...))
	_, err := f.observer.ReleaseHold(context.Background(), m.ID, 0, "hold ran past 1s")
	tb := f.waitTable("switched or released", func(t *coord.SlotTable) bool {
		return len(t.Migrations) == 1 && (t.Migrations[0].State == coord.MigrationCleanup || t.Migrations[0].Attempt == 1)
	})
	switch got := tb.Migrations[0]; {
	case err == nil && (got.State == coord.MigrationCleanup || tb.Owner(0) != "g1"):
		t.Fatalf("the release won, yet the table is %+v owners %v", got, tb.Owners)
	case err != nil && !errors.Is(err, coord.ErrMigrationChanged):
		t.Fatal(err)
	case err != nil && (got.State != coord.MigrationCleanup || tb.Owner(0) != "g2"):
		t.Fatalf("the release lost, yet the table is %+v owners %v", got, tb.Owners)
	}
}

// Cancel aborts the move in flight and starts no other; unassigned slots
// are given without a migration.
func TestMigrationCancelAndUnassigned(t *testing.T) {
	f := migrationCluster(t, fastMigrations)
	if _, err := f.observer.UpdateSlotTable(context.Background(), func(t *coord.SlotTable) error {
		t.Owners[15] = ""
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	m := f.startPlan(coord.Move{From: "", To: "g1", First: 15, Last: 15},
		coord.Move{From: "g1", To: "g2", First: 0, Last: 1}, coord.Move{From: "g1", To: "g2", First: 2, Last: 3})
	f.waitTable("slot 15 given to g1", func(t *coord.SlotTable) bool { return t.Owner(15) == "g1" })
	if _, err := f.observer.CancelRebalance(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := f.waitMigration("abort", func(m *coord.Migration) bool { return m.State == coord.MigrationAbort })
	if a.ID != m.ID || a.Error != errPlanCanceled {
		t.Fatalf("aborted %+v", a)
	}
	f.report("p2", target(m.ID, phaseDropped, 0, 0))
	f.waitNoMigration("the aborted migration ends")
	p := f.waitPlan("plan done", func(p *coord.RebalancePlan) bool { return p.Done })
	want := []coord.MoveState{coord.MoveDone, coord.MoveCancelled, coord.MoveCancelled}
	for i, mv := range p.Moves {
		if mv.State != want[i] {
			t.Fatalf("moves = %+v, want states %v", p.Moves, want)
		}
	}
	if tb := f.waitNoMigration("no migration"); tb.Owner(0) != "g1" {
		t.Fatalf("a cancelled move switched: owners %v", tb.Owners)
	}
}
