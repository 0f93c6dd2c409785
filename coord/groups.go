package coord

import (
	"context"
	"errors"
	"fmt"
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
