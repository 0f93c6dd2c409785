package coord

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Group is a replica set's record. The zero value is a group with no members.
type Group struct {
	Name string `json:"name"`
	// Epoch goes up at every change of primary; whoever changes Primary
	// bumps it in the same UpdateGroup.
	Epoch   uint64   `json:"epoch"`
	Primary string   `json:"primary"` // node id, "" none
	Members []string `json:"members"` // node ids
	ISR     []string `json:"isr"`     // in-sync members, node ids
	// Resync lists members that rebuild their store from the group at
	// their next start (admin node resync); each takes itself off once it
	// has set its files aside.
	Resync []string `json:"resync,omitempty"`
	// Weight is the group's share of the slots relative to the others
	// when slots are rebalanced; nil means 1, and 0 means drained: a
	// rebalance moves every slot away. A pointer so that 0 is stored.
	Weight *int `json:"weight,omitempty"`
}

// DefaultWeight is the weight of a group that has none set.
const DefaultWeight = 1

// EffectiveWeight is g's weight: Weight, or DefaultWeight when unset.
func (g *Group) EffectiveWeight() int {
	if g.Weight == nil {
		return DefaultWeight
	}
	return *g.Weight
}

// Group reads group name and the version to compare-and-set it with;
// ErrNoNode if there is no such group.
func (c *Cluster) Group(ctx context.Context, name string) (*Group, Version, error) {
	if err := c.checkGroup(name); err != nil {
		return nil, 0, err
	}
	g, v, err := GetJSON[Group](ctx, c.conn, groupPath(c.name, name))
	if err != nil {
		return nil, 0, fmt.Errorf("group %q: %w", name, err)
	}
	return g, v, nil
}

// Groups reads every group, sorted by name.
func (c *Cluster) Groups(ctx context.Context) ([]*Group, error) {
	if c.err != nil {
		return nil, c.err
	}
	names, err := c.conn.Children(ctx, groupsDir(c.name))
	if err != nil {
		return nil, fmt.Errorf("groups: %w", c.noCluster(err))
	}
	out := make([]*Group, 0, len(names))
	for _, name := range names {
		g, _, err := GetJSON[Group](ctx, c.conn, groupPath(c.name, name))
		if errors.Is(err, ErrNoNode) {
			continue // deleted while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("groups: %w", err)
		}
		out = append(out, g)
	}
	return out, nil
}

// EnsureGroup creates group name, with no members, unless it exists; safe to
// call concurrently. ErrNoCluster if the cluster does not exist.
func (c *Cluster) EnsureGroup(ctx context.Context, name string) error {
	if err := c.checkGroup(name); err != nil {
		return err
	}
	if _, err := c.Meta(ctx); err != nil {
		return fmt.Errorf("ensure group %q: %w", name, err)
	}
	g := Group{Name: name, Members: []string{}, ISR: []string{}}
	if _, err := createJSON(ctx, c.conn, groupPath(c.name, name), g); err != nil {
		return fmt.Errorf("ensure group %q: %w", name, err)
	}
	return nil
}

// UpdateGroup changes group name with fn under compare-and-set (see
// UpdateJSON: fn may run several times; ErrNoChange or no change writes
// nothing) and returns the group as stored. fn must not rename the group
// (ErrInvalid). ErrNoNode if the group does not exist.
func (c *Cluster) UpdateGroup(ctx context.Context, name string, fn func(*Group) error) (*Group, error) {
	if err := c.checkGroup(name); err != nil {
		return nil, err
	}
	g, err := UpdateJSON(ctx, c.conn, groupPath(c.name, name), func(g *Group) error {
		if err := fn(g); err != nil {
			return err
		}
		if g.Name != name {
			return fmt.Errorf("%w: group %q renamed to %q", ErrInvalid, name, g.Name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("update group %q: %w", name, err)
	}
	return g, nil
}

// WatchGroup returns group name and a channel of its later versions (latest
// only), closed when ctx ends, the group is deleted or the session is in
// doubt; watch again then.
func (c *Cluster) WatchGroup(ctx context.Context, name string) (*Group, <-chan *Group, error) {
	if err := c.checkGroup(name); err != nil {
		return nil, nil, err
	}
	g, ch, err := watchJSON[Group](ctx, c.conn, groupPath(c.name, name))
	if err != nil {
		return nil, nil, fmt.Errorf("watch group %q: %w", name, err)
	}
	return g, ch, nil
}

func (c *Cluster) checkGroup(name string) error {
	if c.err != nil {
		return c.err
	}
	return CheckName("group", name)
}

// Errors of LeaveISR.
var (
	// ErrOnlyInSync: the node is the only in-sync member of its group, so
	// nobody else is known to hold every acknowledged write.
	ErrOnlyInSync = errors.New("coord: the only in-sync replica")
	// ErrIsPrimary: the node is still its group's primary; a failover
	// must move the role first.
	ErrIsPrimary = errors.New("coord: still the primary")
)

// LeaveISR takes node id out of group name's in-sync set so that it may
// rebuild its store from the group: a node without its data must never be
// counted in sync, or be promoted. It is one compare-and-set that bumps
// the epoch when the set changes, so a primary that counted the node stops
// that epoch's role and leads again with the set as stored; the node
// rejoins by catching up like any follower. With mark it also adds id to
// the group's Resync list. Refusals: ErrOnlyInSync when no other member is
// in sync (its data would be all there is), ErrIsPrimary while it is the
// primary (the coordinator fails a stopped primary over to an in-sync
// member). A node already out of sync (and, with mark, already listed)
// changes nothing.
func (c *Cluster) LeaveISR(ctx context.Context, name, id string, mark bool) (*Group, error) {
	return c.UpdateGroup(ctx, name, func(g *Group) error {
		if !slices.Contains(g.Members, id) {
			return fmt.Errorf("%w: %s is not a member of group %s (members %v)", ErrInvalid, id, name, g.Members)
		}
		others := slices.DeleteFunc(slices.Clone(g.ISR), func(m string) bool { return m == id })
		inSync := len(others) < len(g.ISR)
		switch {
		case inSync && len(others) == 0:
			return fmt.Errorf("%w: node %s is the only in-sync replica of %s: repairing it would lose every acknowledged write; "+
				"restore from a backup or use admin failover --force", ErrOnlyInSync, id, name)
		case g.Primary == id:
			return fmt.Errorf("%w: node %s is the primary of %s (epoch %d, in sync %v)", ErrIsPrimary, id, name, g.Epoch, g.ISR)
		}
		changed := false
		if inSync {
			g.ISR = others
			g.Epoch++
			changed = true
		}
		if mark && !slices.Contains(g.Resync, id) {
			g.Resync = append(g.Resync, id)
			changed = true
		}
		if !changed {
			return ErrNoChange
		}
		return nil
	})
}

// ResyncDone takes node id off group name's Resync list.
func (c *Cluster) ResyncDone(ctx context.Context, name, id string) error {
	_, err := c.UpdateGroup(ctx, name, func(g *Group) error {
		if !slices.Contains(g.Resync, id) {
			return ErrNoChange
		}
		g.Resync = slices.DeleteFunc(g.Resync, func(m string) bool { return m == id })
		return nil
	})
	return err
}

// SetGroupWeight sets group name's weight for rebalancing (0: drain it).
func (c *Cluster) SetGroupWeight(ctx context.Context, name string, weight int) (*Group, error) {
	if weight < 0 {
		return nil, fmt.Errorf("%w: group %q: weight %d is negative", ErrInvalid, name, weight)
	}
	return c.UpdateGroup(ctx, name, func(g *Group) error {
		g.Weight = &weight
		return nil
	})
}

// ErrGroupInUse: a group still owns slots, takes part in a migration or
// has a node running, so it cannot be removed.
var ErrGroupInUse = errors.New("coord: group in use")

// RemoveGroup deletes group name's record. It refuses (ErrGroupInUse) while
// the group owns a slot or takes part in a migration, or while one of its
// members, or any node registered for it, is up (members stay listed after
// they stop: a stopped member does not block). ErrNoNode if there is no
// such group. The delete is conditional on the version the checks read, so
// a node admitted meanwhile makes it fail rather than be lost.
func (c *Cluster) RemoveGroup(ctx context.Context, name string) error {
	g, v, err := c.Group(ctx, name)
	if err != nil {
		return fmt.Errorf("remove group: %w", err)
	}
	t, _, err := c.SlotTable(ctx)
	if err != nil {
		return fmt.Errorf("remove group %q: %w", name, err)
	}
	if n := len(t.SlotsOf(name)); n > 0 {
		return fmt.Errorf("%w: group %q owns %d slots: drain it first (admin drain --group %s)", ErrGroupInUse, name, n, name)
	}
	for _, m := range t.Migrations {
		if m.From == name || m.To == name {
			return fmt.Errorf("%w: group %q takes part in migration %s", ErrGroupInUse, name, m.String())
		}
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("remove group %q: %w", name, err)
	}
	for _, n := range nodes {
		if n.Group == name || slices.Contains(g.Members, n.ID) {
			return fmt.Errorf("%w: node %s of group %q is running (%s): stop it first", ErrGroupInUse, n.ID, name, n.Addr)
		}
	}
	if err := c.conn.Delete(ctx, groupPath(c.name, name), v); err != nil {
		return fmt.Errorf("remove group %q: %w", name, err)
	}
	return nil
}
