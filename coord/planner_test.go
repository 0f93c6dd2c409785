package coord_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/thunderyurts/thunderyurts/coord"
)

func group(name string, weight int, primary bool) *coord.Group {
	g := &coord.Group{Name: name}
	if weight != coord.DefaultWeight {
		g.Weight = &weight
	}
	if primary {
		g.Primary = name + "-n1"
	}
	return g
}

// apply returns the owners after moves, checking each move is well formed:
// one contiguous range owned by From, at most MaxMoveSlots.
func apply(t *testing.T, table *coord.SlotTable, moves []coord.Move) []string {
	t.Helper()
	owners := append([]string(nil), table.Owners...)
	for _, m := range moves {
		if m.First > m.Last || m.Slots() > coord.MaxMoveSlots || m.From == m.To || m.State != coord.MovePending {
			t.Fatalf("bad move %+v", m)
		}
		for s := m.First; s <= m.Last; s++ {
			if owners[s] != m.From {
				t.Fatalf("move %+v: slot %d is owned by %q", m, s, owners[s])
			}
			owners[s] = m.To
		}
	}
	return owners
}

func counts(owners []string) map[string]int {
	c := map[string]int{}
	for _, o := range owners {
		c[o]++
	}
	return c
}

func TestPlanMoves(t *testing.T) {
	two := &coord.SlotTable{Owners: coord.SpreadEvenly(1024, []string{"g1", "g2"})}
	three := &coord.SlotTable{Owners: coord.SpreadEvenly(1024, []string{"g1", "g2", "g3"})}
	partial := &coord.SlotTable{Owners: coord.SpreadEvenly(1024, []string{"g1", "g2"})}
	for s := 100; s < 300; s++ {
		partial.Owners[s] = ""
	}
	for _, tc := range []struct {
		name   string
		table  *coord.SlotTable
		groups []*coord.Group
		want   map[string]int // slots each group ends with, ±1
		moved  []int          // acceptable numbers of slots moved
		ranges int            // at most this many contiguous ranges move (0: no bound)
		from   []string       // the only groups allowed to give slots
	}{
		{name: "2→3 equal groups", table: two,
			groups: []*coord.Group{group("g1", 1, true), group("g2", 1, true), group("g3", 1, true)},
			want:   map[string]int{"g1": 341, "g2": 341, "g3": 341}, moved: []int{341, 342}, ranges: 2, from: []string{"g1", "g2"}},
		{name: "weights 2:1:1", table: two,
			groups: []*coord.Group{group("g1", 2, true), group("g2", 1, true), group("g3", 1, true)},
			want:   map[string]int{"g1": 512, "g2": 256, "g3": 256}, moved: []int{256}, from: []string{"g2"}},
		{name: "drain g2 over weights 1:3", table: three,
			groups: []*coord.Group{group("g1", 1, true), group("g2", 0, true), group("g3", 3, true)},
			want:   map[string]int{"g1": 256, "g2": 0, "g3": 768}, from: []string{"g2", "g1"}},
		{name: "drain to one group", table: two,
			groups: []*coord.Group{group("g1", 0, true), group("g2", 1, true)},
			want:   map[string]int{"g1": 0, "g2": 1024}, moved: []int{512}, ranges: 1, from: []string{"g1"}},
		{name: "unassigned slots are given out", table: partial,
			groups: []*coord.Group{group("g1", 1, true), group("g2", 1, true)},
			want:   map[string]int{"g1": 512, "g2": 512, "": 0}},
		{name: "groups without a primary are not targets", table: two,
			groups: []*coord.Group{group("g1", 1, true), group("g2", 1, true), group("g3", 1, false)},
			want:   map[string]int{"g1": 512, "g2": 512, "g3": 0}, moved: []int{0}},
		{name: "a group without a primary keeps its slots", table: three,
			groups: []*coord.Group{group("g1", 1, true), group("g2", 0, false), group("g3", 1, true), group("g4", 1, true)},
			want:   map[string]int{"g1": 227, "g2": 341, "g3": 227, "g4": 228}},
		{name: "balanced: nothing to do", table: three,
			groups: []*coord.Group{group("g1", 1, true), group("g2", 1, true), group("g3", 1, true)},
			moved:  []int{0}},
		{name: "no group can take slots", table: two,
			groups: []*coord.Group{group("g1", 0, true), group("g2", 1, false)},
			moved:  []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			moves := coord.PlanMoves(tc.table, tc.groups)
			after := apply(t, tc.table, moves)
			got := counts(after)
			for g, want := range tc.want {
				if d := got[g] - want; d < -1 || d > 1 {
					t.Errorf("group %q ends with %d slots, want %d±1 (%v)", g, got[g], want, got)
				}
			}
			moved, ranges := 0, 0
			for i, m := range moves {
				moved += m.Slots()
				if i == 0 || moves[i-1].Last+1 != m.First || moves[i-1].From != m.From {
					ranges++
				}
				if tc.from != nil && !slices.Contains(tc.from, m.From) {
					t.Errorf("move %+v takes from %s, not an overloaded group (%v)", m, m.From, tc.from)
				}
			}
			if tc.moved != nil && !slices.Contains(tc.moved, moved) {
				t.Errorf("moved %d slots, want one of %v", moved, tc.moved)
			}
			if tc.ranges > 0 && ranges > tc.ranges {
				t.Errorf("moved %d ranges, want at most %d: %+v", ranges, tc.ranges, moves)
			}
			// A second plan after applying the first is empty.
			if again := coord.PlanMoves(&coord.SlotTable{Owners: after}, tc.groups); len(again) != 0 {
				t.Errorf("second plan is not empty: %+v", again)
			}
		})
	}
}

// Slots in a migration in flight stay put and count as the owner the
// migration ends with.
func TestPlanMovesSkipsMigratingSlots(t *testing.T) {
	table := &coord.SlotTable{Owners: coord.SpreadEvenly(8, []string{"g1"})}
	table.Migrations = []coord.Migration{{ID: "m", From: "g1", To: "g2", First: 0, Last: 3, State: coord.MigrationCopy}}
	moves := coord.PlanMoves(table, []*coord.Group{group("g1", 1, true), group("g2", 1, true)})
	if len(moves) != 0 {
		t.Errorf("moves = %+v, want none: the migration in flight balances the groups", moves)
	}
	table.Migrations[0].State = coord.MigrationAbort
	moves = coord.PlanMoves(table, []*coord.Group{group("g1", 1, true), group("g2", 1, true)})
	if fmt.Sprint(moves) != fmt.Sprint([]coord.Move{{From: "g1", To: "g2", First: 4, Last: 7, State: coord.MovePending}}) {
		t.Errorf("moves = %+v, want slots 4-7 (0-3 are in an aborting migration)", moves)
	}
}
