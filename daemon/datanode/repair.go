package datanode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/internal/clock"
)

// openOrRepair opens the node's store, or rebuilds it from the group: when
// Config.Repair is set and the store is refused as damaged, or when the
// group's record lists the node for a resync (admin node resync), the node
// leaves the in-sync set, sets its store files aside (nothing is deleted)
// and starts with an empty store, which it then fills by following its
// primary like a new member (a snapshot, then the log). It runs before the
// node registers, so it serves nothing until this is done.
//
// The order keeps every crash safe: the node is out of the in-sync set
// before its files move, so a node that restarts with an empty store is
// never counted as holding data it lacks, and a crash before the move
// leaves the damaged store to be refused (or repaired) again.
func (n *Node) openOrRepair(ctx context.Context) (*datastore.Store, error) {
	g, _, err := n.cfg.Cluster.Group(ctx, n.cfg.Group)
	if err != nil && !errors.Is(err, coord.ErrNoNode) {
		return nil, fmt.Errorf("read group %s: %w", n.cfg.Group, err)
	}
	marked := g != nil && slices.Contains(g.Resync, n.id)
	if !marked {
		store, err := n.openStore()
		switch {
		case err == nil:
			if n.cfg.Repair {
				n.log.Info("store opened without damage: nothing to repair")
			}
			return store, nil
		case !errors.Is(err, datastore.ErrCorrupt):
			return nil, err
		case !n.cfg.Repair:
			return nil, fmt.Errorf("%w; start with --repair to rebuild it from the group", err)
		case g == nil:
			return nil, fmt.Errorf("repair: group %s has no record to rebuild from: %w", n.cfg.Group, err)
		}
		n.log.Warn("store refused as damaged; rebuilding it from the group", "err", err)
	} else {
		n.log.Warn("the group lists this node for a resync; rebuilding its store from the group")
	}
	if err := n.leaveISR(ctx); err != nil {
		return nil, err
	}
	aside, err := datastore.SetAside(n.storeDir())
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	n.log.Warn("store files set aside; starting empty and catching up from the primary", "kept_in", aside)
	store, err := n.openStore()
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	if marked {
		if err := n.cfg.Cluster.ResyncDone(ctx, n.cfg.Group, n.id); err != nil {
			store.Close()
			return nil, fmt.Errorf("repair: clear the resync mark: %w", err)
		}
	}
	return store, nil
}

// leaveISR takes the node out of its group's in-sync set. While the group
// still names it primary it waits for the coordinator to promote another
// in-sync member (it does once the node's registration is gone), which
// bumps the epoch and takes the node out of the set itself.
func (n *Node) leaveISR(ctx context.Context) error {
	logged := false
	for {
		g, err := n.cfg.Cluster.LeaveISR(ctx, n.cfg.Group, n.id, false)
		switch {
		case err == nil:
			n.log.Info("out of the in-sync set until caught up", "epoch", g.Epoch, "primary", g.Primary, "isr", g.ISR)
			return nil
		case !errors.Is(err, coord.ErrIsPrimary):
			return fmt.Errorf("repair: %w", err)
		case !logged:
			n.log.Warn("the group still names this node primary; waiting for the coordinator to promote an in-sync member", "err", err)
			logged = true
		}
		if err := clock.Sleep(ctx, 250*time.Millisecond); err != nil {
			return fmt.Errorf("repair: waiting for a failover away from this node: %w", err)
		}
	}
}
