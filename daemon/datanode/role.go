package datanode

import (
	"context"
	"sync"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/internal/clock"
)

// role is what the node currently acts as; manageRole changes it.
type role struct {
	primary *primary

	// follower side: the primary and epoch followed, and how to stop it.
	following    string
	followEpoch  uint64
	stopFollower context.CancelFunc
	followerDone sync.WaitGroup
}

func (n *Node) kickRole() {
	select {
	case n.roleKick <- struct{}{}:
	default:
	}
}

// manageRole makes the node act on its group's state: lead when ZooKeeper
// names it primary, follow the primary otherwise, and act as nothing the
// moment its session is in doubt (docs/replication.md, "Fencing") until it has read
// the group again on a live session.
func (n *Node) manageRole() {
	r := &role{}
	defer n.endRole(r)
	sessionDone := n.cfg.Cluster.Conn().SessionDone()
	n.reconcileRole(r)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-sessionDone:
			n.log.Warn("zookeeper session in doubt: not serving until it is back")
			n.update(func(s *state) { s.sessionOK = false })
			n.endRole(r)
			sessionDone = n.awaitSession()
		case <-n.roleKick:
		}
		n.reconcileRole(r)
	}
}

// awaitSession blocks until the group can be read again, then marks the
// session usable with that fresh group state.
func (n *Node) awaitSession() <-chan struct{} {
	for n.ctx.Err() == nil {
		done := n.cfg.Cluster.Conn().SessionDone()
		ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
		g, _, err := n.cfg.Cluster.Group(ctx, n.cfg.Group)
		cancel()
		if err == nil {
			n.update(func(s *state) { s.group, s.sessionOK = g, true })
			n.log.Info("zookeeper session usable again", "epoch", g.Epoch, "primary", g.Primary)
			return done
		}
		_ = clock.Sleep(n.ctx, 200*time.Millisecond)
	}
	return nil
}

// endRole stops leading and following.
func (n *Node) endRole(r *role) {
	if r.primary != nil {
		p := r.primary
		r.primary = nil
		n.update(func(s *state) { s.primary = nil })
		p.stop(errDeposed)
		n.log.Info("stopped leading", "epoch", p.epoch)
	}
	if r.stopFollower != nil {
		r.stopFollower()
		r.followerDone.Wait()
		r.stopFollower, r.following, r.followEpoch = nil, "", 0
	}
}

func (n *Node) reconcileRole(r *role) {
	st := n.state.Load()
	g := st.group
	switch {
	case !st.sessionOK || g == nil:
		n.endRole(r)
	case g.Primary == n.id:
		if r.primary != nil && r.primary.epoch == g.Epoch {
			return
		}
		n.endRole(r)
		n.lead(r, g)
	case g.Primary != "":
		if r.primary == nil && r.following == g.Primary && r.followEpoch == g.Epoch {
			return
		}
		n.endRole(r)
		ctx, cancel := context.WithCancel(n.ctx)
		r.stopFollower, r.following, r.followEpoch = cancel, g.Primary, g.Epoch
		r.followerDone.Add(1)
		go func() { defer r.followerDone.Done(); n.followLoop(ctx, g.Primary, g.Epoch) }()
	default:
		n.endRole(r)
	}
}

// lead takes the primary role for g's epoch. A node whose own log already
// belongs to that epoch led it before a restart and may have lost entries
// it had shipped but not synced; it must not write more in the same epoch,
// so it first moves the group to a new one.
func (n *Node) lead(r *role, g *coord.Group) {
	if n.store.Epoch() >= g.Epoch {
		next := max(n.store.Epoch(), g.Epoch) + 1
		_, err := n.cfg.Cluster.UpdateGroup(n.ctx, n.cfg.Group, func(cur *coord.Group) error {
			if cur.Primary != n.id || cur.Epoch != g.Epoch {
				return coord.ErrNoChange
			}
			cur.Epoch = next
			return nil
		})
		if err != nil {
			n.log.Warn("could not start a new epoch", "err", err)
			n.retryRoleLater()
		}
		// The group watch brings the new epoch and another reconcile.
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	if err := n.store.SetEpoch(ctx, g.Epoch); err != nil {
		n.log.Error("could not persist the new epoch; not leading", "epoch", g.Epoch, "err", err)
		n.retryRoleLater()
		return
	}
	p := newPrimary(n, g.Epoch, g.ISR)
	r.primary = p
	installed := false
	n.update(func(s *state) {
		installed = s.group != nil && s.group.Epoch == g.Epoch && s.group.Primary == n.id && s.sessionOK
		if installed {
			s.primary = p
		}
	})
	if !installed {
		n.endRole(r)
		n.kickRole()
		return
	}
	n.log.Info("leading", "epoch", g.Epoch, "isr", g.ISR, "last_seq", n.store.LastSeq())
}

func (n *Node) retryRoleLater() {
	time.AfterFunc(500*time.Millisecond, n.kickRole)
}
