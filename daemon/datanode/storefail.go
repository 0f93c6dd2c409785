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

// stateStoreFailed begins the state a node whose store failed reports on
// /readyz and in its status.
const stateStoreFailed = "store-failed"

// Reopening a failed store backs off from storeRetryMin to storeRetryMax: a
// disk that is still full fails the reopened store again at once.
const (
	storeRetryMin = time.Second
	storeRetryMax = 30 * time.Second
)

// errStoreFailed ends the role of a node whose store failed.
var errStoreFailed = errors.New("the node's store failed")

// noteStoreErr looks at an error a store call returned: once the store is
// fail-stop (datastore.ErrFailed: a log write, an fsync or an apply to the
// data file failed) the node stops serving at once and its role manager
// steps down and reopens the store (recoverStore). Every path that writes
// to the store reports its errors here, so no path can leave a failed store
// serving.
func (n *Node) noteStoreErr(err error) {
	if !errors.Is(err, datastore.ErrFailed) {
		return
	}
	first := false
	n.update(func(s *state) {
		first = s.storeErr == nil
		if first {
			s.storeErr = err
		}
	})
	if first {
		n.log.Error("store failed: not serving; stepping down and reopening it", "err", err)
	}
}

// useStore makes s the node's store, fills the retry table with the tags
// of its log's tail once the node is ready (or stops), and watches it, so
// a failure on a path no request waits on (the applier's, on a full disk)
// stops the node serving at once too.
func (n *Node) useStore(s *datastore.Store) {
	fill := n.dedupe.rebuild(s, n.log)
	n.db.Store(s)
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		select {
		case <-n.ready:
		case <-n.ctx.Done():
		}
		fill()
	}()
	go func() {
		defer n.wg.Done()
		select {
		case <-s.Failed():
			n.noteStoreErr(s.Err())
		case <-n.ctx.Done():
		}
	}()
}

// storeRetry is the role manager's backoff for reopening a failed store.
type storeRetry struct {
	delay    time.Duration
	openedAt time.Time // when the store in use was opened
}

// recoverStore runs when the store has failed: a primary hands its role to
// an in-sync member, a secondary stops following (its primary drops it
// from the in-sync set), then the store is closed and reopened with
// backoff until that works. The node then takes up its role again: it
// catches up from its primary and rejoins the in-sync set by itself.
func (n *Node) recoverStore(r *role) {
	if r.primary != nil {
		n.resign(r.primary)
	}
	n.endRole(r)
	if err := n.store().Close(); err != nil {
		n.log.Warn("closing the failed store", "err", err)
	}
	rt := &r.storeRetry
	if rt.delay == 0 || time.Since(rt.openedAt) > 2*storeRetryMax {
		rt.delay = storeRetryMin // it worked for a while: start over
	}
	for {
		n.log.Info("reopening the store", "in", rt.delay)
		if clock.Sleep(n.ctx, rt.delay) != nil {
			return
		}
		rt.delay = min(2*rt.delay, storeRetryMax)
		s, err := n.openStore()
		if err == nil {
			n.useStore(s)
			rt.openedAt = time.Now()
			n.update(func(st *state) { st.storeErr = nil })
			n.log.Info("store reopened", "last_seq", s.LastSeq(), "committed_seq", s.CommittedSeq())
			return
		}
		n.log.Warn("reopening the store failed", "err", err)
	}
}

// resign moves the primary role of a node whose store failed to the
// connected in-sync member that acknowledged the most, in one
// compare-and-set that bumps the epoch and takes this node out of the
// in-sync set. Every in-sync member holds every acknowledged write, so no
// catch-up is needed. Without such a member the role stays here: nobody
// else is known to hold every acknowledged write, and the node leads again
// (in a new epoch) once its store is back.
func (n *Node) resign(p *primary) {
	// The node stopped serving when its store failed; the members'
	// streams are looked at before the role's end closes them.
	acked := map[string]uint64{}
	p.mu.Lock()
	for id, f := range p.members {
		if f.connected {
			acked[id] = f.acked
		}
	}
	p.mu.Unlock()
	p.stop(errStoreFailed)
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	var to string
	g, err := n.cfg.Cluster.UpdateGroup(ctx, n.cfg.Group, func(g *coord.Group) error {
		to = ""
		if g.Epoch != p.epoch || g.Primary != n.id {
			return coord.ErrNoChange
		}
		for _, id := range g.ISR {
			if a, ok := acked[id]; ok && id != n.id && (to == "" || a > acked[to]) {
				to = id
			}
		}
		if to == "" {
			return coord.ErrNoChange
		}
		passRole(g, n.id, to, true)
		return nil
	})
	switch {
	case err != nil:
		n.log.Warn("could not hand the primary role over; the coordinator fails the group over if the session ends", "err", err)
	case to == "":
		n.log.Warn("no connected in-sync member to hand the primary role to; leading again once the store is back", "epoch", p.epoch)
	default:
		n.log.Info("handed the primary role over after the store failed", "to", to, "epoch", g.Epoch)
	}
}

// passRole makes to the primary of g in a new epoch, in place of from; a
// leaving from also leaves the in-sync set, so its successor does not wait
// for it.
func passRole(g *coord.Group, from, to string, leaving bool) {
	g.Primary = to
	g.Epoch++
	if leaving {
		g.ISR = slices.DeleteFunc(slices.Clone(g.ISR), func(id string) bool { return id == from })
	}
}

// storeState is what the node reports as its state: "" while its store
// works.
func storeState(st *state) string {
	if st.storeErr == nil {
		return ""
	}
	return fmt.Sprintf("%s: %v", stateStoreFailed, st.storeErr)
}
