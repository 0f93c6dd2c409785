package coord

import (
	"cmp"
	"slices"
)

// MaxMoveSlots bounds the slots of one move, so that each migration's hold
// (which pauses requests for its slots) covers little data.
const MaxMoveSlots = 64

// PlanMoves is the rebalance planner, a pure function: the moves that bring
// every group within one slot of its share of the slots, moving as few
// slots as that takes. A group's share is proportional to its weight
// (Group.EffectiveWeight) among the groups that can take slots: those with
// a primary and a weight above 0. A group of weight 0 (drained) with a
// primary gives all its slots away; unassigned slots are given out too.
// Slots stay put when they cannot move or be served elsewhere: those of a
// group without a primary (nobody to copy them from), of a group that does
// not exist, or in a migration in flight (counted as the owner it ends
// with). Overloaded groups give their highest slots, so what moves is few
// contiguous ranges, cut into moves of at most MaxMoveSlots slots; moves
// come in slot order, in state pending.
func PlanMoves(t *SlotTable, groups []*Group) []Move {
	owners := slices.Clone(t.Owners)
	pinned := make([]bool, len(owners))
	for _, m := range t.Migrations {
		for s := m.First; s <= m.Last; s++ {
			pinned[s] = true
			if m.State != MigrationAbort {
				owners[s] = m.To
			}
		}
	}
	type info struct {
		name          string
		weight        int
		have, quota   int
		frac          int  // remainder of the exact share, for rounding
		target, drain bool // takes slots; gives all its slots
	}
	byName := map[string]*info{}
	var targets []*info
	totalWeight := 0
	for _, g := range groups {
		in := &info{name: g.Name, weight: g.EffectiveWeight()}
		if g.Primary != "" {
			in.target, in.drain = in.weight > 0, in.weight <= 0
		}
		byName[g.Name] = in
		if in.target {
			targets = append(targets, in)
			totalWeight += in.weight
		}
	}
	if len(targets) == 0 {
		return nil
	}
	// movable: whose slot may go to another group; n: the slots shared out.
	movable := func(s int) bool {
		if pinned[s] {
			return false
		}
		in := byName[owners[s]]
		return owners[s] == "" || (in != nil && (in.target || in.drain))
	}
	n := 0
	for s, o := range owners {
		if in := byName[o]; in != nil && in.target {
			in.have++
			n++
		} else if movable(s) {
			n++
		}
	}
	given := 0
	for _, in := range targets {
		in.quota = n * in.weight / totalWeight
		in.frac = n * in.weight % totalWeight
		given += in.quota
	}
	// The rounding's spare slots go to the largest remainders, then to the
	// groups holding most (they need not move), then by name.
	byClaim := slices.Clone(targets)
	slices.SortFunc(byClaim, func(a, b *info) int {
		return cmp.Or(cmp.Compare(b.frac, a.frac), cmp.Compare(b.have, a.have), cmp.Compare(a.name, b.name))
	})
	for _, in := range byClaim[:n-given] {
		in.quota++
	}

	// surplus: how many slots each owner gives, from its highest down.
	surplus := map[string]int{}
	for s := len(owners) - 1; s >= 0; s-- {
		if !movable(s) {
			continue
		}
		if in := byName[owners[s]]; in != nil && in.target {
			surplus[owners[s]] = in.have - in.quota
		} else {
			surplus[owners[s]]++
		}
	}
	give := make([]bool, len(owners))
	for s := len(owners) - 1; s >= 0; s-- {
		if movable(s) && surplus[owners[s]] > 0 {
			give[s] = true
			surplus[owners[s]]--
		}
	}

	slices.SortFunc(targets, func(a, b *info) int { return cmp.Compare(a.name, b.name) })
	var moves []Move
	next := 0 // the target being filled
	for s := range owners {
		if !give[s] {
			continue
		}
		for next < len(targets) && targets[next].have >= targets[next].quota {
			next++
		}
		if next == len(targets) {
			break // cannot happen: what is given equals what is missing
		}
		to := targets[next]
		to.have++
		if k := len(moves) - 1; k >= 0 && moves[k].From == owners[s] && moves[k].To == to.name &&
			moves[k].Last == s-1 && moves[k].Slots() < MaxMoveSlots {
			moves[k].Last = s
			continue
		}
		moves = append(moves, Move{From: owners[s], To: to.name, First: s, Last: s, State: MovePending})
	}
	return moves
}
