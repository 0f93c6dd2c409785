package admin

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// counted is a primary's answer holding keys and bytes per slot.
func counted(id string, kb map[int][2]uint64) NodeProbe {
	st := &wire.NodeStatus{Id: id}
	for slot := range 64 {
		if c, ok := kb[slot]; ok {
			st.SlotCounts = append(st.SlotCounts, &wire.SlotDigest{Slot: uint32(slot), Keys: c[0], Bytes: c[1]})
		}
	}
	return NodeProbe{Status: st}
}

func TestBuildRebalanceViewCounts(t *testing.T) {
	table := &coord.SlotTable{Owners: []string{"g1", "g1", "g1", "g2", "g2", "", "g3", "g3"}}
	groups := []*coord.Group{{Name: "g1"}, {Name: "g2"}, {Name: "g3"}, {Name: "g4"}}
	plan := &coord.RebalancePlan{Moves: []coord.Move{
		{From: "g1", To: "g4", First: 0, Last: 1, State: coord.MovePending},
		{From: "g2", To: "g4", First: 3, Last: 3, State: coord.MovePending},
		{From: "g2", To: "g4", First: 4, Last: 4, State: coord.MovePending},
		{From: "", To: "g4", First: 5, Last: 5, State: coord.MovePending},
		{From: "g3", To: "g4", First: 6, Last: 7, State: coord.MovePending},
	}}
	type kb struct{ keys, bytes uint64 }
	for _, tc := range []struct {
		name     string
		counts   map[string]NodeProbe
		want     []*kb // per move, nil: unknown
		warnings []string
	}{
		{name: "not asked", want: []*kb{nil, nil, nil, nil, nil}},
		{name: "every primary answered", counts: map[string]NodeProbe{
			"g1": counted("n1", map[int][2]uint64{0: {2, 20}, 1: {3, 33}, 2: {100, 1000}}),
			"g2": counted("n2", map[int][2]uint64{4: {1, 9}}),
			"g3": counted("n3", nil),
		}, want: []*kb{{5, 53}, {0, 0}, {1, 9}, {0, 0}, {0, 0}}},
		{name: "unreachable, store failed, no primary", counts: map[string]NodeProbe{
			"g1": counted("n1", map[int][2]uint64{0: {2, 20}}),
			"g2": {Err: errors.New("primary n2: status of n2:1: connection refused")},
			"g3": {Status: &wire.NodeStatus{Id: "n3", State: "store-failed: disk full"}},
		}, want: []*kb{{2, 20}, nil, nil, {0, 0}, nil}, warnings: []string{
			"keys and bytes of the moves from g2 unknown: primary n2: status of n2:1: connection refused",
			"keys and bytes of the moves from g3 unknown: primary n3 cannot count its keys: store-failed: disk full",
		}},
		{name: "a group not asked", counts: map[string]NodeProbe{"g1": counted("n1", nil), "g2": counted("n2", nil)},
			want: []*kb{{0, 0}, {0, 0}, {0, 0}, {0, 0}, nil}, warnings: []string{"keys and bytes of the moves from g3 unknown: its primary was not asked"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := BuildRebalanceView(plan, table, groups, tc.counts)
			for i, m := range v.Moves {
				switch w := tc.want[i]; {
				case w == nil && (m.Keys != nil || m.Bytes != nil):
					t.Errorf("move %d: keys %d bytes %d, want unknown", i, *m.Keys, *m.Bytes)
				case w != nil && (m.Keys == nil || m.Bytes == nil || *m.Keys != w.keys || *m.Bytes != w.bytes):
					t.Errorf("move %d: %s, want %d keys %d bytes", i, dump(m), w.keys, w.bytes)
				}
			}
			if !reflect.DeepEqual(v.Warnings, tc.warnings) {
				t.Errorf("warnings %q, want %q", v.Warnings, tc.warnings)
			}
			var buf bytes.Buffer
			if err := PrintRebalance(&buf, v, FormatTable); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.warnings {
				if !strings.Contains(buf.String(), "warning: "+w+"\n") {
					t.Errorf("printed without %q:\n%s", w, buf.String())
				}
			}
			if tc.want[2] == nil && !hasRow(buf.String(), []string{"4", "g2", "g4", "1", "-", "-", "pending"}) {
				t.Errorf("unknown counts not shown as -:\n%s", buf.String())
			}
		})
	}
}

func TestOrphanWarnings(t *testing.T) {
	// g1 owns 0-3, g2 4-7; g2 imports 0-1 from g1; g3 imports 6 from g2.
	table := &coord.SlotTable{Owners: []string{"g1", "g1", "g1", "g1", "g2", "g2", "g2", "g2", ""}, Migrations: []coord.Migration{
		{ID: "m1", From: "g1", To: "g2", First: 0, Last: 1, State: coord.MigrationCopy},
		{ID: "m2", From: "g2", To: "g3", First: 6, Last: 6, State: coord.MigrationCopy},
	}}
	// Afterwards m1 switched, and m3 began moving 2 from g1 to g3.
	after := table.Clone()
	after.Owners[0], after.Owners[1] = "g2", "g2"
	after.Migrations[0].State = coord.MigrationCleanup
	after.Migrations = append(after.Migrations, coord.Migration{ID: "m3", From: "g1", To: "g3", First: 2, Last: 2, State: coord.MigrationCopy})
	groups := []*coord.Group{{Name: "g3"}, {Name: "g1"}, {Name: "g2"}, {Name: "g4"}}
	for _, tc := range []struct {
		name   string
		counts map[string]NodeProbe
		tables []*coord.SlotTable
		want   []string
	}{
		{name: "owned or moving", counts: map[string]NodeProbe{
			"g1": counted("n1", map[int][2]uint64{0: {5, 50}, 1: {1, 1}, 3: {2, 2}}),
			"g2": counted("n2", map[int][2]uint64{0: {5, 50}, 4: {1, 1}, 6: {1, 1}}),
			"g3": counted("n3", map[int][2]uint64{6: {1, 1}}),
		}, tables: []*coord.SlotTable{table}},
		{name: "left over", counts: map[string]NodeProbe{
			"g1": counted("n1", map[int][2]uint64{0: {5, 50}, 4: {1, 10}, 5: {2, 20}, 7: {3, 30}, 8: {4, 40}}),
			"g3": counted("n3", map[int][2]uint64{3: {1, 7}, 6: {9, 9}}),
			"g4": counted("n4", map[int][2]uint64{6: {0, 0}}), // an empty slot is no orphan
		}, tables: []*coord.SlotTable{table}, want: []string{
			"group g1 holds 10 orphaned keys (100 bytes) in slots 4-5,7-8: it does not own them and no migration of it moves them (left by an interrupted migration; not served)",
			"group g3 holds 1 orphaned key (7 bytes) in slots 3: it does not own them and no migration of it moves them (left by an interrupted migration; not served)",
		}},
		{name: "the table read after explains them", counts: map[string]NodeProbe{
			"g2": counted("n2", map[int][2]uint64{0: {5, 50}, 1: {1, 1}}),
			"g3": counted("n3", map[int][2]uint64{2: {1, 1}}),
		}, tables: []*coord.SlotTable{table, after}},
		{name: "nothing known", counts: map[string]NodeProbe{
			"g1": {Err: errors.New("unreachable")},
			"g2": {Status: &wire.NodeStatus{Id: "n2", State: "store-failed: x", SlotCounts: []*wire.SlotDigest{{Slot: 8, Keys: 1}}}},
		}, tables: []*coord.SlotTable{table}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := orphanWarnings(groups, tc.counts, tc.tables...); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("warnings\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

// Status asks every node with slotCounts (so every key count is exact), and
// warns about keys a primary holds in slots its group does not own; a
// secondary's counts are not added to its primary's.
func TestCollectStatusOrphans(t *testing.T) {
	ctx := testContext(t)
	cl := newTestCluster(t) // g1 (n1 primary, n2) owns 0-5; 6-7 unassigned
	var mu sync.Mutex
	asked := map[string]string{}
	probe := func(how string, sc []*wire.SlotDigest) NodeStatusFunc {
		return func(ctx context.Context, addr string) (*wire.NodeStatus, error) {
			mu.Lock()
			asked[addr] = how
			mu.Unlock()
			return &wire.NodeStatus{Id: strings.TrimSuffix(addr, ":1"), SlotCounts: sc}, nil
		}
	}
	orphans := []*wire.SlotDigest{{Slot: 2, Keys: 4, Bytes: 40}, {Slot: 6, Keys: 2, Bytes: 22}, {Slot: 7, Keys: 1, Bytes: 11}}
	s, err := CollectStatus(ctx, cl, probe("status", nil), probe("counts", orphans))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"n1:1": "counts", "n2:1": "counts"}; !reflect.DeepEqual(asked, want) {
		t.Errorf("asked %v, want %v", asked, want)
	}
	want := "group g1 holds 3 orphaned keys (33 bytes) in slots 6-7: it does not own them and no migration of it moves them (left by an interrupted migration; not served)"
	if !strings.Contains(strings.Join(s.Warnings, "\n"), want) {
		t.Errorf("warnings lack %q:\n%s", want, strings.Join(s.Warnings, "\n"))
	}

	// Without slot counts, no primary is asked for them and none is found.
	clear(asked)
	s, err = CollectStatus(ctx, cl, probe("status", orphans), nil)
	if err != nil {
		t.Fatal(err)
	}
	if asked["n1:1"] != "status" || strings.Contains(strings.Join(s.Warnings, "\n"), "orphaned") {
		t.Errorf("asked %v, warnings %q", asked, s.Warnings)
	}
}

func TestRangesOf(t *testing.T) {
	got := formatRanges(rangesOf([]int{0, 1, 2, 5, 7, 8}))
	if got != "0-2,5,7-8" {
		t.Errorf("ranges %q", got)
	}
}
