package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/admin"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// What the admin commands show of a rebalance, end to end: the dry run's
// keys and bytes per move, the last pause of the finished migrations, and
// admin status's warning about keys a group holds in slots it neither
// owns nor moves.
func TestMigrationReport(t *testing.T) {
	tc := newTestCluster(t)
	tc.coordinator("coord-1")
	tc.dataNode("data-g1", "g1")
	cl := tc.coordCluster()
	tc.waitServing(cl, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := tc.client(cl)
	const keys = 600
	parallel(t, 16, keys, func(i int) error {
		return c.Put(ctx, []byte(fmt.Sprintf("r-%04d", i)), []byte(fmt.Sprintf("value-%04d", i)))
	})
	tc.dataNode("data-g2", "g2")
	tc.waitGroup(cl, "g2", 60*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 1 })

	// The dry run counts what every move copies.
	out, errOut, code := tc.cli(nil, "admin", "rebalance", "--dry-run", "-o", "json")
	var plan admin.RebalanceView
	if code != 0 || json.Unmarshal([]byte(out), &plan) != nil || len(plan.Moves) == 0 || len(plan.Warnings) != 0 {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	var slots int
	var wantKeys, wantBytes, gotKeys, gotBytes uint64
	for _, mv := range plan.Moves {
		if mv.Keys == nil || mv.Bytes == nil {
			t.Fatalf("move %+v has no counts", mv)
		}
		gotKeys, gotBytes = gotKeys+*mv.Keys, gotBytes+*mv.Bytes
		slots += mv.Count
		for i := range keys {
			k := fmt.Sprintf("r-%04d", i)
			if s := coord.SlotOf([]byte(k), 64); s >= mv.Slots.From && s <= mv.Slots.To {
				wantKeys, wantBytes = wantKeys+1, wantBytes+uint64(len(k)+len("value-0000"))
			}
		}
	}
	if gotKeys != wantKeys || gotBytes != wantBytes || slots != 32 {
		t.Fatalf("dry run: %d slots, %d keys, %d bytes move; want 32, %d, %d", slots, gotKeys, gotBytes, wantKeys, wantBytes)
	}

	if out, errOut, code := runCLIWithin(t, 2*time.Minute, nil, "--zk", tc.zk.Addr(), "--cluster", tc.name, "admin", "rebalance", "-o", "json"); code != 0 {
		t.Fatalf("rebalance: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = tc.cli(nil, "admin", "slots", "-o", "json")
	var v admin.SlotsView
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.LastFinished == nil {
		t.Fatalf("admin slots: exit %d\n%s%s", code, out, errOut)
	}
	if f := v.LastFinished; !f.Moved || f.Holds < 1 || f.LastPause == nil || *f.LastPause <= 0 || *f.LastPause > time.Minute {
		t.Fatalf("last finished migration %+v; want moved, with its last pause", f)
	}
	hist, err := cl.MigrationHistory(ctx)
	if err != nil || len(hist) == 0 || slices.ContainsFunc(hist, func(r coord.MigrationRecord) bool { return r.Holds == 0 || r.LastPauseMs <= 0 }) {
		t.Fatalf("history %+v, %v: every migration should keep its holds and last pause", hist, err)
	}
	if warnings, code := statusWarnings(t, tc); strings.Contains(warnings, "orphaned") {
		t.Fatalf("status after the rebalance exits %d, warns:\n%s", code, warnings)
	}

	// A migration someone else started (the leader drives only its plan's)
	// taken out of the table without an abort leaves the import behind.
	table, _, err := cl.SlotTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slot := table.SlotsOf("g1")[0]
	m := coord.Migration{ID: coord.NewMigrationID(time.Now(), slot), From: "g1", To: "g2", First: slot, Last: slot,
		State: coord.MigrationCopy, Since: time.Now().UTC()}
	if _, err := cl.UpdateSlotTable(ctx, func(t *coord.SlotTable) error { t.Migrations = append(t.Migrations, m); return nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		rt, err := cl.Routes(ctx)
		if err != nil {
			return err
		}
		st, err := nodeclient.Nodes{}.NodeStatus(ctx, rt.Groups["g2"].PrimaryAddr)
		if err != nil {
			return err
		}
		for _, r := range st.Migrations {
			if r.Id == m.ID && r.Phase == "caught-up" {
				return nil
			}
		}
		return fmt.Errorf("g2 reports %v", st.Migrations)
	})
	if _, err := cl.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
		t.Migrations = slices.DeleteFunc(t.Migrations, func(x coord.Migration) bool { return x.ID == m.ID })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var staged int
	for i := range keys {
		if coord.SlotOf([]byte(fmt.Sprintf("r-%04d", i)), 64) == slot {
			staged++
		}
	}
	if staged < 2 {
		t.Fatalf("slot %d holds %d of the keys; the check needs some", slot, staged)
	}
	want := fmt.Sprintf("group g2 holds %d orphaned keys", staged)
	if warnings, code := statusWarnings(t, tc); !strings.Contains(warnings, want) || code != 1 {
		t.Fatalf("status exits %d, warnings lack %q:\n%s", code, want, warnings)
	}
}

// statusWarnings is what admin status -o json warns about, and its exit
// code (1 when it warns).
func statusWarnings(t *testing.T, tc *testCluster) (string, int) {
	t.Helper()
	out, errOut, code := tc.cli(nil, "admin", "status", "-o", "json")
	var s admin.Status
	if json.Unmarshal([]byte(out), &s) != nil || code != map[bool]int{true: 0, false: 1}[len(s.Warnings) == 0] {
		t.Fatalf("admin status: exit %d\n%s%s", code, out, errOut)
	}
	return strings.Join(s.Warnings, "\n"), code
}
