package coordtest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

// migrationCluster is a cluster of 8 slots, g1 owning 0-3 and g2 4-7.
func migrationCluster(t *testing.T, s *suite) *coord.Cluster {
	ctx := testCtx(t)
	cl := newCluster(t, ctx, s.newConn(t), 8)
	for _, g := range []string{"g1", "g2"} {
		must(t, cl.EnsureGroup(ctx, g), "ensure "+g)
	}
	_, err := cl.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
		copy(t.Owners, coord.SpreadEvenly(8, []string{"g1", "g2"}))
		return nil
	})
	must(t, err, "assign slots")
	return cl
}

// A migration goes copy → hold → cleanup → gone, each step a CAS that
// checks the state (and attempt) it expects; a released hold cannot
// switch, and of a switch and a release racing exactly one wins.
func testMigrationSteps(t *testing.T, s *suite) {
	ctx := testCtx(t)
	cl := migrationCluster(t, s)
	m, err := cl.StartMigration(ctx, coord.Migration{From: "g1", To: "g2", First: 2, Last: 3, RateMBps: 5})
	must(t, err, "start")
	if m.ID == "" || m.State != coord.MigrationCopy || m.Since.IsZero() {
		t.Fatalf("started %+v", m)
	}
	_, err = cl.StartMigration(ctx, coord.Migration{From: "g1", To: "g2", First: 3, Last: 3})
	wantErr(t, err, coord.ErrInvalid, "overlapping migration")
	_, err = cl.StartMigration(ctx, coord.Migration{From: "g2", To: "g1", First: 0, Last: 0})
	wantErr(t, err, coord.ErrInvalid, "migration of slots From does not own")
	_, err = cl.SwitchMigration(ctx, m.ID, 0)
	wantErr(t, err, coord.ErrMigrationChanged, "switch from copy")
	_, err = cl.HoldMigration(ctx, m.ID, 0)
	must(t, err, "hold")
	_, err = cl.ReleaseHold(ctx, m.ID, 0, "hold ran past 1s")
	must(t, err, "release")
	_, err = cl.SwitchMigration(ctx, m.ID, 0)
	wantErr(t, err, coord.ErrMigrationChanged, "switch of a released hold")
	tbl, err := cl.HoldMigration(ctx, m.ID, 1)
	must(t, err, "hold attempt 1")
	if got := tbl.Migration(m.ID); got.State != coord.MigrationHold || got.Attempt != 1 || got.Error != "hold ran past 1s" {
		t.Fatalf("after release and hold: %+v", got)
	}

	// Switch and release race, each on its own session: one wins.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, fn := range []func(*coord.Cluster) error{
		func(c *coord.Cluster) error { _, err := c.SwitchMigration(ctx, m.ID, 1); return err },
		func(c *coord.Cluster) error { _, err := c.ReleaseHold(ctx, m.ID, 1, "raced"); return err },
	} {
		mine := view(s.newConn(t), cl.Name())
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fn(mine) }()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else if !errors.Is(err, coord.ErrMigrationChanged) {
			t.Fatalf("racing step: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("switch and release: %d won (%v), want exactly one", won, errs)
	}
	tbl, _, err = cl.SlotTable(ctx)
	must(t, err, "slot table")
	got := tbl.Migration(m.ID)
	switched := errs[0] == nil
	if switched != (got.State == coord.MigrationCleanup) || switched != (tbl.Owner(2) == "g2" && tbl.Owner(3) == "g2") {
		t.Fatalf("switch won %v, table %+v owners %v", switched, got, tbl.Owners)
	}
	if !switched {
		_, err = cl.AbortMigration(ctx, m.ID, "digest mismatch slot 2")
		must(t, err, "abort")
		_, err = cl.EndMigration(ctx, m.ID, coord.MigrationCleanup)
		wantErr(t, err, coord.ErrMigrationChanged, "end an aborted migration as cleaned up")
		_, err = cl.EndMigration(ctx, m.ID, coord.MigrationAbort)
	} else {
		_, err = cl.AbortMigration(ctx, m.ID, "too late")
		wantErr(t, err, coord.ErrMigrationChanged, "abort after the switch")
		_, err = cl.EndMigration(ctx, m.ID, coord.MigrationCleanup)
	}
	must(t, err, "end")
	tbl, _, err = cl.SlotTable(ctx)
	must(t, err, "slot table")
	if len(tbl.Migrations) != 0 {
		t.Fatalf("migrations left: %+v", tbl.Migrations)
	}
}

// The history keeps the newest HistoryLimit finished migrations, oldest
// first; recording one twice changes nothing.
func testMigrationHistory(t *testing.T, s *suite) {
	ctx := testCtx(t)
	cl := migrationCluster(t, s)
	hist, err := cl.MigrationHistory(ctx)
	must(t, err, "empty history")
	if len(hist) != 0 {
		t.Fatalf("new cluster has history %+v", hist)
	}
	start := time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC)
	n := coord.HistoryLimit + 3
	for i := range n {
		rec := coord.MigrationRecord{Migration: coord.Migration{ID: coord.NewMigrationID(start.Add(time.Duration(i)*time.Second), i),
			From: "g1", To: "g2", First: i, Last: i, State: coord.MigrationCleanup}, Keys: uint64(i)}
		must(t, cl.RecordMigration(ctx, rec), "record")
		must(t, cl.RecordMigration(ctx, rec), "record again")
	}
	hist, err = cl.MigrationHistory(ctx)
	must(t, err, "history")
	if len(hist) != coord.HistoryLimit || hist[0].First != n-coord.HistoryLimit || hist[len(hist)-1].First != n-1 || !hist[0].Moved() {
		t.Fatalf("history has %d records, first %+v; want the newest %d", len(hist), hist[0], coord.HistoryLimit)
	}
	last := hist[len(hist)-1]
	got, err := cl.FinishedMigration(ctx, last.ID)
	must(t, err, "finished migration")
	if got.Keys != uint64(n-1) || got.Finished.IsZero() {
		t.Errorf("record = %+v", got)
	}
	_, err = cl.FinishedMigration(ctx, hist[0].ID+"x")
	wantErr(t, err, coord.ErrNoNode, "unknown migration")
}

// One plan runs at a time; a done plan is replaced; cancel marks it.
func testRebalancePlan(t *testing.T, s *suite) {
	ctx := testCtx(t)
	cl := migrationCluster(t, s)
	_, err := cl.RebalancePlan(ctx)
	wantErr(t, err, coord.ErrNoNode, "no plan yet")
	moves := []coord.Move{{From: "g1", To: "g2", First: 0, Last: 1}}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		mine := view(s.newConn(t), cl.Name())
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = mine.StartRebalance(ctx, coord.RebalancePlan{ID: fmt.Sprintf("r%d", i), Moves: moves, RateMBps: 2})
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("two concurrent starts: %v; want exactly one", errs)
	}
	for _, err := range errs {
		if err != nil {
			wantErr(t, err, coord.ErrRebalanceRunning, "second start")
		}
	}
	p, err := cl.RebalancePlan(ctx)
	must(t, err, "plan")
	if p.Done || len(p.Moves) != 1 || p.Moves[0].State != coord.MovePending || p.RateMBps != 2 || p.Created.IsZero() {
		t.Fatalf("plan = %+v", p)
	}
	p, err = cl.CancelRebalance(ctx)
	must(t, err, "cancel")
	if !p.Cancel {
		t.Fatalf("cancelled plan = %+v", p)
	}
	_, err = cl.UpdateRebalancePlan(ctx, func(p *coord.RebalancePlan) error {
		p.Moves[0].State, p.Done = coord.MoveCancelled, true
		return nil
	})
	must(t, err, "finish plan")
	p, err = cl.StartRebalance(ctx, coord.RebalancePlan{})
	must(t, err, "start after done")
	if !p.Done || len(p.Moves) != 0 || p.ID == "" {
		t.Fatalf("empty plan = %+v, want done at once", p)
	}
}

// A group is removed only once it owns no slot, takes part in no
// migration and runs no node; then its weight can no longer be set.
func testRemoveGroup(t *testing.T, s *suite) {
	ctx := testCtx(t)
	cl := migrationCluster(t, s)
	wantErr(t, cl.RemoveGroup(ctx, "g2"), coord.ErrGroupInUse, "remove a group owning slots")
	_, err := cl.UpdateGroup(ctx, "g2", func(g *coord.Group) error {
		g.Members = []string{"n2"}
		return nil
	})
	must(t, err, "member")
	g, err := cl.SetGroupWeight(ctx, "g2", 0)
	must(t, err, "drain g2")
	if g.Weight == nil || g.EffectiveWeight() != 0 {
		t.Fatalf("weight = %v", g.Weight)
	}
	_, err = cl.SetGroupWeight(ctx, "g2", -1)
	wantErr(t, err, coord.ErrInvalid, "negative weight")
	_, err = cl.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
		copy(t.Owners, coord.SpreadEvenly(8, []string{"g1"}))
		return nil
	})
	must(t, err, "move g2's slots")
	m, err := cl.StartMigration(ctx, coord.Migration{From: "g1", To: "g2", First: 0, Last: 0})
	must(t, err, "start")
	wantErr(t, cl.RemoveGroup(ctx, "g2"), coord.ErrGroupInUse, "remove a migration's target")
	_, err = cl.AbortMigration(ctx, m.ID, "test")
	must(t, err, "abort")
	_, err = cl.EndMigration(ctx, m.ID, coord.MigrationAbort)
	must(t, err, "end")
	nconn := s.newConn(t)
	must(t, view(nconn, cl.Name()).RegisterNode(ctx, coord.NodeInfo{ID: "n2", Group: "g2", Addr: "n2:1"}), "register n2")
	wantErr(t, cl.RemoveGroup(ctx, "g2"), coord.ErrGroupInUse, "remove a group with a running node")
	must(t, nconn.Close(), "stop n2")
	eventually(t, "n2's registration is gone", func() bool {
		nodes, err := cl.Nodes(ctx)
		return err == nil && len(nodes) == 0
	})
	must(t, cl.RemoveGroup(ctx, "g2"), "remove a stopped, empty group")
	_, _, err = cl.Group(ctx, "g2")
	wantErr(t, err, coord.ErrNoNode, "removed group")
	wantErr(t, cl.RemoveGroup(ctx, "g2"), coord.ErrNoNode, "remove again")
}
