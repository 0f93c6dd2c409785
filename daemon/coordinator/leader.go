package coordinator

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// lead does the leader's work until ctx, the leadership, ends: it reacts to
// every change of the registered nodes and re-checks the cluster each second
// so that nothing is missed between watches; the migration driver runs
// beside it for as long.
func (c *Coordinator) lead(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); c.driveMigrations(ctx) }()
	l := &leader{c: c, stranded: map[string]uint64{}}
	if b := c.cfg.Backups; b != nil {
		done := make(chan struct{})
		defer func() { <-done }()
		go func() { defer close(done); b.Run(ctx, c.cfg.ID) }()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var changes <-chan []coord.NodeInfo
	for ctx.Err() == nil {
		if changes == nil {
			nodes, ch, err := c.cfg.Cluster.WatchNodes(ctx)
			if err != nil {
				c.log.Warn("watch nodes failed", "err", err)
			} else {
				changes = ch
				l.reconcile(ctx, nodes)
			}
		}
		select {
		case <-ctx.Done():
			return
		case nodes, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			l.reconcile(ctx, nodes)
		case <-tick.C:
			if nodes, err := c.cfg.Cluster.Nodes(ctx); err == nil {
				l.reconcile(ctx, nodes)
			}
		}
	}
}

// leader holds what one term of leadership remembers between checks.
type leader struct {
	c *Coordinator
	// assignableSince is when a new cluster first had a group with a
	// primary; slots are spread AssignDelay later.
	assignableSince time.Time
	// stranded remembers, per group, the epoch for which the leader already
	// warned that no in-sync member is alive, so it warns once.
	stranded map[string]uint64
}

func (l *leader) reconcile(ctx context.Context, nodes []coord.NodeInfo) {
	for _, n := range nodes {
		l.admit(ctx, n)
	}
	l.failover(ctx)
	l.assignInitialSlots(ctx)
}

// failover promotes, for every group whose primary's registration is gone
// (its ZooKeeper session expired, so it has stopped serving), the live
// in-sync member with the longest log, bumping the epoch in the same
// compare-and-set (docs/replication.md, "Failover"). A group with no live in-sync
// member stays without a writable primary until one returns or an operator
// forces a promotion.
//
// The registrations are read after the groups, never taken from an older
// snapshot: a primary whose session was replaced registers again before it
// moves its group to a new epoch, so a group read showing that epoch is
// followed by a registration read showing the primary, and the leader
// cannot depose a primary that holds a valid lease on its new session.
func (l *leader) failover(ctx context.Context) {
	cl := l.c.cfg.Cluster
	groups, err := cl.Groups(ctx)
	if err != nil {
		return
	}
	nodes, err := cl.Nodes(ctx)
	if err != nil {
		return
	}
	registered := map[string]coord.NodeInfo{}
	for _, n := range nodes {
		registered[n.ID] = n
	}
	for _, g := range groups {
		if g.Primary == "" {
			continue
		}
		if _, alive := registered[g.Primary]; alive {
			continue
		}
		best, pos, ok := l.mostCaughtUp(ctx, g, registered)
		if !ok {
			if l.stranded[g.Name] != g.Epoch {
				l.stranded[g.Name] = g.Epoch
				l.c.log.Warn("group has lost its primary and no in-sync member is alive; writes wait for one to return (or admin failover --force)",
					"group", g.Name, "primary", g.Primary, "isr", g.ISR, "epoch", g.Epoch)
			}
			continue
		}
		old, epoch := g.Primary, g.Epoch
		promoted := false
		ng, err := cl.UpdateGroup(ctx, g.Name, func(cur *coord.Group) error {
			promoted = cur.Primary == old && cur.Epoch == epoch
			if !promoted {
				return coord.ErrNoChange
			}
			cur.Primary = best
			cur.Epoch++
			cur.ISR = slices.DeleteFunc(slices.Clone(cur.ISR), func(id string) bool { return id == old })
			if !slices.Contains(cur.ISR, best) {
				cur.ISR = append(cur.ISR, best)
			}
			return nil
		})
		switch {
		case err != nil:
			l.c.log.Warn("failover failed", "group", g.Name, "err", err)
		case promoted:
			l.c.metrics.failovers.Inc()
			l.c.log.Info("failover: promoted the in-sync member with the longest log", "group", g.Name, "old_primary", old,
				"new_primary", best, "epoch", ng.Epoch, "last_epoch", pos.LastEpoch, "last_seq", pos.LastSeq)
		}
	}
}

// mostCaughtUp asks the live in-sync members of g for their log position
// and returns the one with the newest (last epoch, last sequence).
func (l *leader) mostCaughtUp(ctx context.Context, g *coord.Group, registered map[string]coord.NodeInfo) (string, *wire.NodeStatus, bool) {
	var best string
	var bestPos *wire.NodeStatus
	for _, id := range g.ISR {
		info, alive := registered[id]
		if id == g.Primary || !alive {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		pos, err := l.c.cfg.NodeStatus(sctx, info.Addr)
		cancel()
		if err != nil {
			l.c.log.Warn("in-sync member did not report its log position", "group", g.Name, "node", id, "err", err)
			continue
		}
		if bestPos == nil || pos.LastEpoch > bestPos.LastEpoch || (pos.LastEpoch == bestPos.LastEpoch && pos.LastSeq > bestPos.LastSeq) {
			best, bestPos = id, pos
		}
	}
	return best, bestPos, bestPos != nil
}

// admit makes a registered node a member of its group, and its primary if
// the group has none.
func (l *leader) admit(ctx context.Context, n coord.NodeInfo) {
	cl := l.c.cfg.Cluster
	if err := cl.EnsureGroup(ctx, n.Group); err != nil {
		l.c.log.Warn("create group failed", "group", n.Group, "err", err)
		return
	}
	changed := false
	g, err := cl.UpdateGroup(ctx, n.Group, func(g *coord.Group) error {
		changed = false
		if !slices.Contains(g.Members, n.ID) {
			g.Members = append(g.Members, n.ID)
			changed = true
		}
		if g.Primary == "" {
			g.Primary = n.ID
			g.Epoch++
			g.ISR = []string{n.ID}
			changed = true
		}
		if !changed {
			return coord.ErrNoChange
		}
		return nil
	})
	switch {
	case err != nil:
		l.c.log.Warn("admit node failed", "node", n.ID, "group", n.Group, "err", err)
	case changed:
		l.c.log.Info("node admitted", "node", n.ID, "group", g.Name, "primary", g.Primary, "epoch", g.Epoch)
	}
}

// assignInitialSlots spreads the slots of a new cluster evenly over the
// groups that have a primary, once AssignDelay has passed since the first
// such group appeared. It never touches a table that has any owner.
func (l *leader) assignInitialSlots(ctx context.Context) {
	cl := l.c.cfg.Cluster
	table, _, err := cl.SlotTable(ctx)
	if err != nil || slices.ContainsFunc(table.Owners, func(o string) bool { return o != "" }) {
		return
	}
	groups, err := cl.Groups(ctx)
	if err != nil {
		return
	}
	var names []string
	for _, g := range groups {
		if g.Primary != "" {
			names = append(names, g.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	if l.assignableSince.IsZero() {
		l.assignableSince = time.Now()
		l.c.log.Info("first group ready; slots will be assigned shortly", "delay", l.c.cfg.AssignDelay)
	}
	if time.Since(l.assignableSince) < l.c.cfg.AssignDelay {
		return
	}
	assigned := false
	t, err := cl.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
		assigned = !slices.ContainsFunc(t.Owners, func(o string) bool { return o != "" })
		if !assigned {
			return coord.ErrNoChange
		}
		t.Owners = coord.SpreadEvenly(len(t.Owners), names)
		return nil
	})
	switch {
	case err != nil:
		l.c.log.Warn("slot assignment failed", "err", err)
	case assigned:
		l.c.log.Info("slots assigned", "groups", names, "table_version", t.Version)
	}
}
