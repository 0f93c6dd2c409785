package coord

import (
	"context"
	"fmt"
)

// RouteTable is what a client needs to route a key: the slot table and, per
// group, where its primary and members are. The zero value routes nothing.
type RouteTable struct {
	Table  *SlotTable
	Groups map[string]GroupRoute // by group name
}

// GroupRoute is one group's routing entry.
type GroupRoute struct {
	Name        string
	Epoch       uint64
	Primary     string // node id, "" none
	PrimaryAddr string // "" when there is no primary or it is not registered
	Members     []NodeRoute
}

// NodeRoute is a member's id and address ("" when it is not registered).
type NodeRoute struct {
	ID, Addr string
}

// Routes assembles the route table from the slot table, the groups and the
// registered nodes. The three are read one after the other, not as one
// snapshot; a client that is sent elsewhere by a data node reads them again.
func (c *Cluster) Routes(ctx context.Context) (*RouteTable, error) {
	table, _, err := c.SlotTable(ctx)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	groups, err := c.Groups(ctx)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	addr := make(map[string]string, len(nodes))
	for _, n := range nodes {
		addr[n.ID] = n.Addr
	}
	rt := &RouteTable{Table: table, Groups: make(map[string]GroupRoute, len(groups))}
	for _, g := range groups {
		gr := GroupRoute{Name: g.Name, Epoch: g.Epoch, Primary: g.Primary, PrimaryAddr: addr[g.Primary]}
		for _, id := range g.Members {
			gr.Members = append(gr.Members, NodeRoute{ID: id, Addr: addr[id]})
		}
		rt.Groups[g.Name] = gr
	}
	return rt, nil
}

// GroupOf returns the route of the group owning slot; false when the slot is
// unassigned, out of range, or owned by a group that has no record.
func (r *RouteTable) GroupOf(slot int) (GroupRoute, bool) {
	if r.Table == nil {
		return GroupRoute{}, false
	}
	owner := r.Table.Owner(slot)
	if owner == "" {
		return GroupRoute{}, false
	}
	g, ok := r.Groups[owner]
	return g, ok
}

// Serving reports whether every slot has an owner with a registered primary.
func (r *RouteTable) Serving() bool {
	if r.Table == nil || len(r.Table.Owners) == 0 {
		return false
	}
	for slot := range r.Table.Owners {
		if g, ok := r.GroupOf(slot); !ok || g.PrimaryAddr == "" {
			return false
		}
	}
	return true
}
