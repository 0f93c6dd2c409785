package datanode

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/wire"
)

// Load writes one batch of a restore (backup.Restore): the keys are
// appended as one write through the primary's replicated write path, and
// the answer comes once the in-sync replicas hold them. A batch with a key
// whose slot this node does not serve is refused whole, before anything
// is written, so the restore routes it again from a fresh slot table.
//
// The writes carry no tag (docs/replication.md, "Idempotent writes"): a
// restore retries a batch whose answer it lost by writing the same values
// again, which leaves every key as one write would (a put stores the value
// and nothing else, and untagged writes never enter the retry window).
func (s *service) Load(ctx context.Context, req *wire.LoadRequest) (*wire.LoadReply, error) {
	n := s.n
	start := time.Now()
	if len(req.Items) == 0 {
		return &wire.LoadReply{}, nil
	}
	p, written, refusal := n.queueLoad(ctx, req.Items)
	if refusal != nil {
		return refusal, nil
	}
	n.metrics.requests[opPut].Add(float64(len(req.Items)))
	w := <-written // the store reports every queued write
	n.noteStoreErr(w.err)
	if w.err != nil {
		return loadRefusal(w.err), nil
	}
	p.recompute()
	if err := p.waitCommitted(ctx, w.seq); err != nil {
		return loadRefusal(err), nil
	}
	n.metrics.observe(opPut, len(req.Items), time.Since(start))
	return &wire.LoadReply{}, nil
}

// loadWritten is the store's outcome of a queued load batch.
type loadWritten struct {
	seq uint64
	err error
}

// queueLoad routes every key of items and, if this node's primary serves
// all their slots, queues them for the group commit. It holds the
// migration holds' gate while it does, as a request batch does (hold.go):
// a hold that begins after it sees the batch in the log before its
// barrier, and one that has begun refuses it here.
func (n *Node) queueLoad(ctx context.Context, items []*wire.KeyValue) (*primary, <-chan loadWritten, *wire.LoadReply) {
	h := &n.mig.holds
	h.gate.RLock()
	defer h.gate.RUnlock()
	st := n.state.Load()
	store := n.store()
	slots := len(st.table.Owners)
	muts := make([]datastore.Mutation, len(items))
	for i, kv := range items {
		if err := store.Validate(kv.Key, kv.Value); err != nil {
			return nil, nil, loadRefusal(fmt.Errorf("key %.64q: %w", kv.Key, err))
		}
		slot := coord.SlotOf(kv.Key, slots)
		if r := n.route(st, slot, false); r != nil {
			return nil, nil, &wire.LoadReply{Code: r.Code, Message: r.Message, OwnerGroup: r.OwnerGroup, TableVersion: r.TableVersion}
		}
		muts[i] = datastore.Mutation{Slot: slot, Key: kv.Key, Value: kv.Value}
	}
	if slot, held := h.heldOf(st, n.cfg.Group, muts); held {
		return nil, nil, loadRefusal(fmt.Errorf("%w: slot %d is held while a migration hands it over; try again shortly", wire.ErrUnavailable, slot))
	}
	p := st.primary
	err := p.leaseErr()
	if err == nil {
		err = p.admit()
	}
	if err != nil {
		return nil, nil, loadRefusal(err)
	}
	written := make(chan loadWritten, 1)
	err = store.WriteAsync(ctx, muts, func(seq uint64, err error) { written <- loadWritten{seq, err} })
	if err != nil {
		n.noteStoreErr(err)
		return nil, nil, loadRefusal(err)
	}
	return p, written, nil
}

// heldOf returns a slot of muts that a migration from group holds, by the
// node's holds or by its table (a hold about to begin).
func (h *holds) heldOf(st *state, group string, muts []datastore.Mutation) (int, bool) {
	if h.active.Load() == 0 && !slices.ContainsFunc(st.table.Migrations, func(m coord.Migration) bool { return isHeld(&m, group) }) {
		return 0, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range muts {
		slot := muts[i].Slot
		if h.holding(slot) != nil || isHeld(st.table.MigrationOf(slot), group) {
			return slot, true
		}
	}
	return 0, false
}

func loadRefusal(err error) *wire.LoadReply {
	return &wire.LoadReply{Code: codeOf(err), Message: err.Error()}
}
