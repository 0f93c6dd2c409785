package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/thunderyurts/thunderyurts/coord"
)

// ResyncResult is what `admin node resync` did.
type ResyncResult struct {
	Group string   `json:"group"`
	Node  string   `json:"node"`
	Epoch uint64   `json:"epoch"`
	ISR   []string `json:"isr"`
}

// ErrNodeRunning: the node to resync is registered (running, or its
// crashed process's session has not expired yet).
var ErrNodeRunning = errors.New("admin: node is running")

// Resync marks a stopped data node to rebuild its store from its group at
// its next start: in one compare-and-set (coord.Cluster.LeaveISR) it takes
// the node out of the in-sync set, bumping the epoch, and lists it in the
// group's Resync; the node, when it starts, sets its files aside and
// catches up from the primary like a new member. group "" finds the group
// the node is a member of. It refuses a running node (ErrNodeRunning), the
// group's only in-sync member (coord.ErrOnlyInSync) and its primary
// (coord.ErrIsPrimary: the coordinator fails a stopped primary over first).
func Resync(ctx context.Context, c *coord.Cluster, group, node string) (*ResyncResult, error) {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("read nodes: %w", err)
	}
	if i := slices.IndexFunc(nodes, func(n coord.NodeInfo) bool { return n.ID == node }); i >= 0 {
		return nil, fmt.Errorf("%w: %s is registered at %s: stop it and run this again (it rebuilds its store at its next start); "+
			"a crashed node's registration lasts until its session times out", ErrNodeRunning, node, nodes[i].Addr)
	}
	if group == "" {
		if group, err = groupOf(ctx, c, node); err != nil {
			return nil, err
		}
	}
	g, err := c.LeaveISR(ctx, group, node, true)
	switch {
	case errors.Is(err, coord.ErrInvalid):
		return nil, fmt.Errorf("%w: %w", ErrNoSuchMember, err)
	case errors.Is(err, coord.ErrIsPrimary):
		return nil, fmt.Errorf("%w; the coordinator promotes an in-sync member once the node's registration is gone: run this again then", err)
	case err != nil:
		return nil, err
	}
	return &ResyncResult{Group: group, Node: node, Epoch: g.Epoch, ISR: g.ISR}, nil
}

// groupOf is the group node is a member of.
func groupOf(ctx context.Context, c *coord.Cluster, node string) (string, error) {
	groups, err := c.Groups(ctx)
	if err != nil {
		return "", err
	}
	for _, g := range groups {
		if slices.Contains(g.Members, node) {
			return g.Name, nil
		}
	}
	return "", fmt.Errorf("%w: no group has member %s", ErrNoSuchMember, node)
}

// PrintResync renders a ResyncResult.
func PrintResync(w io.Writer, r *ResyncResult, f Format) error {
	return render(w, f, r, func() error {
		ew := &errWriter{w: w}
		ew.printf("%s is out of the in-sync set of group %s (epoch %d, in sync %v)\n", r.Node, r.Group, r.Epoch, r.ISR)
		ew.printf("it sets its store files aside and rebuilds them from the primary at its next start\n")
		return ew.err
	})
}
