package datanode

import (
	"context"
	"slices"
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

	storeRetry storeRetry
	// leadSession is the ZooKeeper session in which the node was
	// registered when it started, or last claimed an epoch (see lead).
	leadSession int64
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
func (n *Node) manageRole(registeredSession int64) {
	r := &role{leadSession: registeredSession}
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
	case st.storeErr != nil:
		n.recoverStore(r)
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

// lead takes the primary role for g's epoch, in the current ZooKeeper
// session: the primary serves only while that session's lease holds.
//
// Sometimes it first moves the group to a new epoch, and leads when the
// group watch brings it:
//   - A node whose own log already belongs to that epoch led it before a
//     restart and may have lost entries it had shipped but not synced; it
//     must not write more in the same epoch.
//   - A node whose session changed since it last claimed an epoch: the
//     coordinator may have seen its registration gone with the old session
//     and be about to promote another member over the group state read
//     here. Once its registration is back in the new session, a new epoch
//     makes that promotion's compare-and-set fail (docs/replication.md,
//     "Fencing").
func (n *Node) lead(r *role, g *coord.Group) {
	session := n.cfg.Cluster.Conn().Lease().Session
	if session == 0 {
		n.log.Info("not leading until ZooKeeper has confirmed the session", "epoch", g.Epoch)
		n.retryRoleLater()
		return
	}
	newSession := session != r.leadSession
	if newSession && !n.registeredIn(session) {
		n.log.Info("not leading until the node is registered again in its new session", "epoch", g.Epoch)
		n.retryRoleLater()
		return
	}
	if newSession || n.store().Epoch() >= g.Epoch {
		next := max(n.store().Epoch(), g.Epoch) + 1
		claimed := false
		_, err := n.cfg.Cluster.UpdateGroup(n.ctx, n.cfg.Group, func(cur *coord.Group) error {
			claimed = cur.Primary == n.id && cur.Epoch == g.Epoch
			if !claimed {
				return coord.ErrNoChange
			}
			cur.Epoch = next
			return nil
		})
		switch {
		case err != nil:
			n.log.Warn("could not start a new epoch", "err", err)
			n.retryRoleLater()
		case claimed:
			r.leadSession = session
		}
		// The group watch brings the new epoch and another reconcile.
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	if err := n.store().SetEpoch(ctx, g.Epoch); err != nil {
		n.noteStoreErr(err)
		n.log.Error("could not persist the new epoch; not leading", "epoch", g.Epoch, "err", err)
		n.retryRoleLater()
		return
	}
	p := newPrimary(n, g.Epoch, g.ISR, session)
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
	n.log.Info("leading", "epoch", g.Epoch, "isr", g.ISR, "last_seq", n.store().LastSeq())
}

// registeredIn says whether the node's registration is in place while
// ZooKeeper session is current.
func (n *Node) registeredIn(session int64) bool {
	ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
	defer cancel()
	nodes, err := n.cfg.Cluster.Nodes(ctx)
	if err != nil {
		return false
	}
	i := slices.IndexFunc(nodes, func(info coord.NodeInfo) bool { return info.ID == n.id })
	return i >= 0 && nodes[i].Addr == n.addr && nodes[i].StartedAt.Equal(n.startedAt) &&
		n.cfg.Cluster.Conn().Lease().Session == session
}

func (n *Node) retryRoleLater() {
	time.AfterFunc(500*time.Millisecond, n.kickRole)
}
