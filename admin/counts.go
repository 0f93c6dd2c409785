package admin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// Slot counts are what each slot holds on a group's primary
// (NodeStatus.SlotCounts, asked with a NodeStatusFunc such as
// nodeclient.Nodes.NodeSlotCounts): the rebalance plan shows the keys and bytes each
// move copies, and status finds keys a group holds in slots it does not
// own.

// probePrimaries asks the primaries of the groups want accepts with
// nodeStatus, in parallel, and returns the answers by group. A group with
// no primary, or one not registered, gets an error saying so.
func probePrimaries(ctx context.Context, c *coord.Cluster, groups []*coord.Group, want func(group string) bool,
	nodeStatus NodeStatusFunc) (map[string]NodeProbe, error) {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]NodeProbe{}
	var asked []coord.NodeInfo
	groupOf := map[string]string{} // primary → group
	for _, g := range groups {
		if !want(g.Name) {
			continue
		}
		i := slices.IndexFunc(nodes, func(n coord.NodeInfo) bool { return n.ID == g.Primary })
		switch {
		case g.Primary == "":
			out[g.Name] = NodeProbe{Err: errors.New("the group has no primary")}
		case i < 0:
			out[g.Name] = NodeProbe{Err: fmt.Errorf("its primary %s is not registered", g.Primary)}
		default:
			asked = append(asked, nodes[i])
			groupOf[g.Primary] = g.Name
		}
	}
	for id, p := range probeNodes(ctx, asked, nodeStatus) {
		if p.Err != nil {
			p.Err = fmt.Errorf("primary %s: %w", id, p.Err)
		}
		out[groupOf[id]] = p
	}
	return out, nil
}

// slotCounts is what a primary's answer (asked for slot counts) says each
// slot holds, by slot; a slot absent holds no key. The error says why it
// is not known.
func slotCounts(p NodeProbe) (map[int]*wire.SlotDigest, error) {
	switch {
	case p.Err != nil:
		return nil, p.Err
	case p.Status.State != "":
		return nil, fmt.Errorf("primary %s cannot count its keys: %s", p.Status.Id, p.Status.State)
	}
	out := make(map[int]*wire.SlotDigest, len(p.Status.SlotCounts))
	for _, d := range p.Status.SlotCounts {
		out[int(d.Slot)] = d
	}
	return out, nil
}

// sumCounts adds up the keys and bytes of slots first..last.
func sumCounts(counts map[int]*wire.SlotDigest, first, last int) (keys, bytes uint64) {
	for s := first; s <= last; s++ {
		keys += counts[s].GetKeys()
		bytes += counts[s].GetBytes()
	}
	return keys, bytes
}

// orphanWarnings finds, for each group whose primary reported its slot
// counts (by group), the keys it holds in slots that in none of tables
// its group owns or moves in a migration with the group as source or
// target: what a crashed cleanup or an aborted import left behind. Reading
// the table before and after asking the primaries keeps a migration that
// began or ended meanwhile from looking like one.
func orphanWarnings(groups []*coord.Group, counts map[string]NodeProbe, tables ...*coord.SlotTable) []string {
	var out []string
	for _, g := range slices.SortedFunc(slices.Values(groups), func(a, b *coord.Group) int { return strings.Compare(a.Name, b.Name) }) {
		probe, ok := counts[g.Name]
		if !ok {
			continue
		}
		sc, err := slotCounts(probe)
		if err != nil {
			continue // status warns about the node already
		}
		var slots []int
		var keys, bytes uint64
		for _, slot := range slices.Sorted(maps.Keys(sc)) {
			if d := sc[slot]; d.Keys > 0 && !explained(g.Name, slot, tables) {
				slots = append(slots, slot)
				keys, bytes = keys+d.Keys, bytes+d.Bytes
			}
		}
		if len(slots) > 0 {
			out = append(out, fmt.Sprintf("group %s holds %d orphaned %s (%d bytes) in slots %s: it does not own them and no migration of "+
				"it moves them (left by an interrupted migration; not served)", g.Name, keys, plural(int(keys), "key", "keys"), bytes, formatRanges(rangesOf(slots))))
		}
	}
	return out
}

// explained says whether group owns slot, or moves it in a migration, in
// any of tables.
func explained(group string, slot int, tables []*coord.SlotTable) bool {
	for _, t := range tables {
		if t.Owner(slot) == group {
			return true
		}
		if m := t.MigrationOf(slot); m != nil && (m.From == group || m.To == group) {
			return true
		}
	}
	return false
}

// rangesOf turns ascending slots into runs of consecutive ones.
func rangesOf(slots []int) []Range {
	var out []Range
	for _, s := range slots {
		if n := len(out); n > 0 && out[n-1].To == s-1 {
			out[n-1].To = s
			continue
		}
		out = append(out, Range{From: s, To: s})
	}
	return out
}
