package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// addGroup adds group name with primary node (not registered).
func addGroup(t *testing.T, cl *coord.Cluster, name, primary string) {
	t.Helper()
	ctx := testContext(t)
	if err := cl.EnsureGroup(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.UpdateGroup(ctx, name, func(g *coord.Group) error {
		g.Primary, g.Members, g.ISR = primary, []string{primary}, []string{primary}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A dry run plans and writes nothing; a rebalance stores the plan; a second
// one follows it; a drain meanwhile is refused; cancel marks it.
func TestRebalance(t *testing.T) {
	ctx := testContext(t)
	cl := newTestCluster(t) // g1 owns 0-5 of 8, 6-7 unassigned
	addGroup(t, cl, "g2", "n3")

	// g1's primary counts what its slots hold; slot 0 does not move.
	counts := func(ctx context.Context, addr string) (*wire.NodeStatus, error) {
		if addr != "n1:1" {
			return nil, errors.New("unexpected address " + addr)
		}
		return &wire.NodeStatus{Id: "n1", SlotCounts: []*wire.SlotDigest{{Slot: 0, Keys: 7, Bytes: 70}, {Slot: 4, Keys: 3, Bytes: 30}, {Slot: 5, Keys: 1, Bytes: 10}}}, nil
	}
	v, err := Rebalance(ctx, cl, RebalanceRequest{DryRun: true}, counts)
	if err != nil {
		t.Fatal(err)
	}
	if !v.DryRun || v.Plan != "" || len(v.Moves) == 0 {
		t.Fatalf("dry run = %s", dump(v))
	}
	if _, err := cl.RebalancePlan(ctx); !errors.Is(err, coord.ErrNoNode) {
		t.Fatalf("a dry run stored a plan: %v", err)
	}
	var buf bytes.Buffer
	if err := PrintRebalance(&buf, v, FormatTable); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", buf.String())
	for _, cells := range [][]string{{"6-7", "(unassigned)", "g2", "2", "0", "0", "pending"}, {"4-5", "g1", "g2", "2", "4", "40", "pending"},
		{"g2", "1", "0", "4"}, {"g1", "1", "6", "4"}} {
		if !hasRow(buf.String(), cells) {
			t.Errorf("no row %q in\n%s", cells, buf.String())
		}
	}
	if !strings.HasPrefix(buf.String(), "dry run: 4 slots (4 keys, 40 bytes) would move in 2 migrations") || strings.Contains(buf.String(), "warning") {
		t.Errorf("dry run printed\n%s", buf.String())
	}

	v, err = Rebalance(ctx, cl, RebalanceRequest{RateMBps: 7}, nil)
	if err != nil || v.Plan == "" || v.Following || v.RateMBps != 7 {
		t.Fatalf("rebalance = %s, %v", dump(v), err)
	}
	again, err := Rebalance(ctx, cl, RebalanceRequest{}, nil)
	if err != nil || !again.Following || again.Plan != v.Plan {
		t.Fatalf("second rebalance = %s, %v; want to follow %s", dump(again), err, v.Plan)
	}
	if _, err := Rebalance(ctx, cl, RebalanceRequest{Drain: "g1"}, nil); !errors.Is(err, coord.ErrRebalanceRunning) {
		t.Fatalf("drain during a rebalance: %v", err)
	}
	if g, _, _ := cl.Group(ctx, "g1"); g.EffectiveWeight() != 1 {
		t.Fatalf("a refused drain set the weight: %+v", g)
	}
	c, err := CancelRebalance(ctx, cl)
	if err != nil || c.Plan != v.Plan {
		t.Fatalf("cancel = %s, %v", dump(c), err)
	}
	if p, _ := cl.RebalancePlan(ctx); !p.Cancel {
		t.Fatalf("plan not cancelled: %+v", p)
	}
}

func TestDrainAndGroups(t *testing.T) {
	ctx := testContext(t)
	cl := newTestCluster(t)
	addGroup(t, cl, "g2", "n3")
	if _, err := Rebalance(ctx, cl, RebalanceRequest{Drain: "nope"}, nil); !errors.Is(err, ErrNoSuchGroup) {
		t.Fatalf("drain of an unknown group: %v", err)
	}
	v, err := Rebalance(ctx, cl, RebalanceRequest{Drain: "g1", DryRun: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g, _, _ := cl.Group(ctx, "g1"); g.Weight != nil {
		t.Fatalf("a dry-run drain set the weight: %+v", g)
	}
	for _, s := range v.Shares {
		if want := map[string]int{"g1": 0, "g2": 8}[s.Group]; s.After != want {
			t.Errorf("group %s ends with %d slots, want %d", s.Group, s.After, want)
		}
	}
	if _, err := CancelRebalance(ctx, cl); !errors.Is(err, ErrNoRebalance) {
		t.Fatalf("cancel without a rebalance: %v", err)
	}
	if _, err := Rebalance(ctx, cl, RebalanceRequest{Drain: "g1"}, nil); err != nil {
		t.Fatal(err)
	}
	if g, _, _ := cl.Group(ctx, "g1"); g.EffectiveWeight() != 0 {
		t.Fatalf("drain left the weight at %d", g.EffectiveWeight())
	}

	res, err := SetGroupWeight(ctx, cl, "g2", 3)
	if err != nil || *res.Weight != 3 {
		t.Fatalf("weight = %+v, %v", res, err)
	}
	if _, err := SetGroupWeight(ctx, cl, "nope", 3); !errors.Is(err, ErrNoSuchGroup) {
		t.Fatalf("weight of an unknown group: %v", err)
	}
	if _, err := RemoveGroup(ctx, cl, "g1"); !errors.Is(err, coord.ErrGroupInUse) {
		t.Fatalf("remove a group with slots: %v", err)
	}
	if _, err := RemoveGroup(ctx, cl, "nope"); !errors.Is(err, ErrNoSuchGroup) {
		t.Fatalf("remove an unknown group: %v", err)
	}
	addGroup(t, cl, "g3", "n9")
	res, err = RemoveGroup(ctx, cl, "g3")
	if err != nil || !res.Removed {
		t.Fatalf("remove an empty group: %+v, %v", res, err)
	}
	var buf bytes.Buffer
	if err := PrintGroupChange(&buf, res, FormatTable); err != nil || buf.String() != "group g3 removed\n" {
		t.Fatalf("printed %q, %v", buf.String(), err)
	}
}

func TestRebalanceProgress(t *testing.T) {
	now := time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)
	table := &coord.SlotTable{Owners: []string{"g1", "g1", "g2", "g2"}, Migrations: []coord.Migration{
		{ID: "m2", From: "g1", To: "g2", First: 1, Last: 1, State: coord.MigrationHold, Attempt: 1, Since: now.Add(-time.Second), Error: "hold ran past 1s"},
	}}
	plan := &coord.RebalancePlan{ID: "r1", Moves: []coord.Move{
		{From: "g1", To: "g2", First: 2, Last: 3, State: coord.MoveDone, Migration: "m1"},
		{From: "g1", To: "g2", First: 1, Last: 1, State: coord.MoveRunning, Migration: "m2"},
		{From: "", To: "g2", First: 0, Last: 0, State: coord.MoveFailed, Tries: 3, Error: "boom"},
	}}
	reports := map[string]*wire.NodeStatus{"g2": {Migrations: []*wire.MigrationStatus{
		{Id: "m2", Role: "target", Keys: 5, Bytes: 50, ImportedSeq: 90, SourceCommitted: 100, SnapshotDone: true}}},
		"g1": {Migrations: []*wire.MigrationStatus{{Id: "m2", Role: "source", Phase: "held", Holds: 1, LastPauseMicros: 1_000_250}}}}
	p := BuildRebalanceProgress(plan, table, reports, now)
	if p.Slots != 4 || p.Moved != 2 || len(p.Running) != 1 || len(p.Failed) != 1 || p.Moves["done"] != 1 {
		t.Fatalf("progress = %s", dump(p))
	}
	r := p.Running[0]
	if *r.Keys != 5 || *r.Lag != 10 || r.InState != time.Second || r.Attempt != 1 || r.Holds != 1 || *r.LastPause != 1000250*time.Microsecond {
		t.Fatalf("running = %s", dump(r))
	}
	if line := ProgressLine(p); !strings.Contains(line, "50% 2/4 slots, 1/3 moves done; 1 g1→g2 hold 5 keys lag 10") {
		t.Errorf("progress line %q", line)
	}
	var buf bytes.Buffer
	if err := PrintRebalanceProgress(&buf, p, FormatTable); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "failed: slots 0 (unassigned)→g2 after 3 tries: boom") {
		t.Errorf("printed:\n%s", buf.String())
	}

	buf.Reset()
	run := &RebalanceRun{Plan: BuildRebalanceView(plan, table, nil, nil), Result: p}
	if err := PrintRebalanceRun(&buf, run, FormatJSON); err != nil {
		t.Fatal(err)
	}
	var runBack RebalanceRun
	if err := json.Unmarshal(buf.Bytes(), &runBack); err != nil || runBack.Plan.Plan != "r1" || len(runBack.Plan.Moves) != 3 || runBack.Result.Moved != 2 {
		t.Errorf("JSON = %s, %v", buf.String(), err)
	}

	hist := []coord.MigrationRecord{{Migration: coord.Migration{ID: "m1", From: "g1", To: "g2", First: 2, Last: 3, State: coord.MigrationCleanup}, Finished: now, Keys: 9,
		Holds: 2, LastPauseMs: 37.42}}
	v := BuildSlots(table, hist, reports, now)
	if len(v.Migrations) != 1 || v.LastFinished == nil || !v.LastFinished.Moved || v.LastFinished.Keys != 9 || v.LastFinished.Holds != 2 ||
		*v.LastFinished.LastPause != 37420*time.Microsecond {
		t.Fatalf("slots view = %s", dump(v))
	}
	buf.Reset()
	if err := PrintSlots(&buf, v, FormatTable); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", buf.String())
	if !hasRow(buf.String(), []string{"1", "g1→g2", "hold", "1s", "5", "50", "10", "-", "1", "1.0003s", "hold ran past 1s"}) ||
		!strings.Contains(buf.String(), "last finished: m1 slots 2-3 g1→g2 at 2026-12-02T14:00:00Z, 9 keys, 0 bytes, last pause 37.4ms (2 holds): moved") {
		t.Errorf("printed:\n%s", buf.String())
	}
	buf.Reset()
	if err := PrintSlots(&buf, v, FormatJSON); err != nil {
		t.Fatal(err)
	}
	var back SlotsView
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || len(back.Migrations) != 1 || back.LastFinished.ID != "m1" ||
		*back.Migrations[0].LastPause != *r.LastPause || *back.LastFinished.LastPause != *v.LastFinished.LastPause {
		t.Errorf("JSON = %s, %v", buf.String(), err)
	}
}

func TestRebalanceWarnings(t *testing.T) {
	now := time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)
	zero := 0
	table := &coord.SlotTable{Owners: []string{"g1", "g1"}, Migrations: []coord.Migration{
		{ID: "m1", From: "g1", To: "g2", First: 0, Last: 0, State: coord.MigrationHold, Since: now.Add(-time.Minute), Error: "hold ran past 1s"},
		{ID: "m2", From: "g1", To: "g2", First: 1, Last: 1, State: coord.MigrationCopy, Since: now.Add(-time.Minute)},
	}}
	groups := []*coord.Group{{Name: "g1", Members: []string{"a"}}, {Name: "g2", Members: []string{"b"}},
		{Name: "g3", Members: []string{"c"}, Weight: &zero}, {Name: "g4"}}
	got := strings.Join(rebalanceWarnings(table, groups, now), "\n")
	for _, want := range []string{"group g2 has members but no slots", "migration m1 slots 0-0 g1→g2 (hold) has been in hold for 1m0s (attempt 0, last error: hold ran past 1s)"} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"g3", "g4", "m2"} {
		if strings.Contains(got, not) {
			t.Errorf("warnings mention %s:\n%s", not, got)
		}
	}
}

// FollowRebalance reads until the plan is done; without a plan it says so.
func TestFollowRebalance(t *testing.T) {
	ctx := testContext(t)
	cl := newTestCluster(t)
	if _, err := FollowRebalance(ctx, cl, nil, time.Millisecond, time.Second, func(*RebalanceProgress) {}); !errors.Is(err, ErrNoRebalance) {
		t.Fatalf("follow without a plan: %v", err)
	}
	if _, err := cl.StartRebalance(ctx, coord.RebalancePlan{Moves: []coord.Move{{From: "g1", To: "g2", First: 0, Last: 0}}}); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = cl.UpdateRebalancePlan(context.Background(), func(p *coord.RebalancePlan) error {
			p.Moves[0].State, p.Done = coord.MoveDone, true
			return nil
		})
	}()
	shown := 0
	p, err := FollowRebalance(ctx, cl, nil, 5*time.Millisecond, time.Second, func(*RebalanceProgress) { shown++ })
	if err != nil || !p.Done || p.Moved != 1 || shown == 0 {
		t.Fatalf("follow = %s, %v (shown %d)", dump(p), err, shown)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := FollowRebalance(cctx, cl, nil, time.Millisecond, time.Second, func(*RebalanceProgress) {}); !errors.Is(err, context.Canceled) {
		t.Fatalf("follow after Ctrl-C: %v", err)
	}
}
