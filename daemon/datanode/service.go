package datanode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/wire"
)

// service implements wire.DRPCDataServer.
type service struct {
	wire.DRPCDataUnimplementedServer
	n *Node
}

// codeOf is the one table from storage errors to wire codes.
func codeOf(err error) wire.Code {
	switch {
	case err == nil:
		return wire.Code_OK
	case errors.Is(err, datastore.ErrNotFound):
		return wire.Code_NOT_FOUND
	case errors.Is(err, datastore.ErrEmptyKey), errors.Is(err, datastore.ErrKeyTooLarge),
		errors.Is(err, datastore.ErrValueTooLarge), errors.Is(err, datastore.ErrBadSlot):
		return wire.Code_INVALID_ARGUMENT
	case errors.Is(err, datastore.ErrCorrupt):
		return wire.Code_CORRUPT
	case errors.Is(err, datastore.ErrClosed), errors.Is(err, datastore.ErrFailed), errors.Is(err, context.Canceled), errors.Is(err, errDeposed):
		return wire.Code_UNAVAILABLE
	}
	return wire.CodeOf(err)
}

func errResponse(id uint64, err error) *wire.Response {
	return &wire.Response{Id: id, Code: codeOf(err), Message: err.Error()}
}

// route decides whether this node serves slot now; nil means yes. A stale
// read (stale_ok) may be served by any member of the owning group.
func (n *Node) route(st *state, slot int, stale bool) *wire.Response {
	owner := st.table.Owner(slot)
	switch {
	case owner != n.cfg.Group:
		return &wire.Response{Code: wire.Code_MOVED, OwnerGroup: owner, TableVersion: st.table.Version,
			Message: fmt.Sprintf("slot %d moved to group %s (slot table v%d)", slot, owner, st.table.Version)}
	case st.storeErr != nil:
		return &wire.Response{Code: wire.Code_UNAVAILABLE,
			Message: fmt.Sprintf("node %s: %s", n.id, storeState(st))}
	case !st.sessionOK:
		return &wire.Response{Code: wire.Code_UNAVAILABLE,
			Message: fmt.Sprintf("node %s lost its ZooKeeper session; it serves again once its role is known", n.id)}
	case stale:
		return nil
	case !st.isPrimary():
		return &wire.Response{Code: wire.Code_NOT_PRIMARY, OwnerGroup: owner, TableVersion: st.table.Version,
			Message: fmt.Sprintf("node %s is not the primary of group %s", n.id, n.cfg.Group)}
	case !st.primary.serving():
		return &wire.Response{Code: wire.Code_UNAVAILABLE,
			Message: fmt.Sprintf("node %s is taking over or handing over group %s", n.id, n.cfg.Group)}
	}
	return nil
}

// maxReusedBatch bounds the memory of keys and values a client stream
// keeps to decode its next batch into.
const maxReusedBatch = 1 << 20

// Stream serves one long-lived request stream. Reads of a batch are answered
// from one read transaction at once; its writes are queued for the group
// commit without waiting, and answered when committed, while the next
// batches are already read. Replies leave in batches of whatever is ready.
func (s *service) Stream(rpc wire.DRPCData_StreamStream) error {
	ctx := rpc.Context()
	r := &replier{wake: make(chan struct{}, 1), room: make(chan struct{}, 1), stopped: make(chan struct{}), m: s.n.metrics}
	sent := make(chan error, 1)
	go func() {
		defer close(r.stopped)
		sent <- r.run(ctx, rpc)
	}()
	// handle is done with a batch's requests when it returns (a held one
	// is cloned): each batch is decoded into the last one's memory.
	batch := &wire.Batch{}
	for {
		// A client that does not read its replies stops being read
		// from, rather than making this node hold them all.
		if !r.waitRoom(ctx) {
			break
		}
		if err := wire.RecvBatchInto(rpc, batch); err != nil {
			break
		}
		s.n.metrics.batches.Inc()
		s.n.metrics.batchSize.Observe(float64(len(batch.Requests)))
		s.handle(ctx, batch, r)
		if wire.BatchMemory(batch) > maxReusedBatch {
			batch = &wire.Batch{} // one batch of large values: let it go
		}
	}
	r.close()
	if err := <-sent; err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

func (s *service) handle(ctx context.Context, batch *wire.Batch, r *replier) {
	n := s.n
	start := time.Now()
	// Requests for slots of a migration in hold wait (hold.go).
	batch, admitted := n.mig.holds.admit(ctx, s, batch, r)
	defer admitted()
	st := n.state.Load()
	slots := len(st.table.Owners)
	replies := make([]*wire.Response, 0, len(batch.Requests))
	store := n.store()
	var gets []*wire.Request
	var refs []datastore.KeyRef
	var putIDs []uint64
	var muts []datastore.Mutation
	leased := false // some request needs the primary's lease
	for _, req := range batch.Requests {
		if req.Op == wire.Op_PING {
			replies = append(replies, &wire.Response{Id: req.Id})
			continue
		}
		if err := store.Validate(req.Key, req.Value); err != nil {
			replies = append(replies, errResponse(req.Id, err))
			continue
		}
		slot := coord.SlotOf(req.Key, slots)
		stale := req.StaleOk && req.Op == wire.Op_GET
		if refusal := n.route(st, slot, stale); refusal != nil {
			refusal.Id = req.Id
			replies = append(replies, refusal)
			continue
		}
		leased = leased || !stale
		switch req.Op {
		case wire.Op_GET:
			n.metrics.requests[opGet].Inc()
			gets = append(gets, req)
			refs = append(refs, datastore.KeyRef{Slot: slot, Key: req.Key})
		case wire.Op_PUT, wire.Op_DELETE:
			n.metrics.requests[opOf(req.Op)].Inc()
			if muts == nil {
				// Sized once: a batch is mostly writes or mostly reads.
				muts, putIDs = make([]datastore.Mutation, 0, len(batch.Requests)), make([]uint64, 0, len(batch.Requests))
			}
			putIDs = append(putIDs, req.Id)
			muts = append(muts, datastore.Mutation{Slot: slot, Key: req.Key, Value: req.Value, Delete: req.Op == wire.Op_DELETE,
				Tag: datastore.Tag{Client: req.ClientId, Seq: req.ClientSeq}})
		default:
			replies = append(replies, errResponse(req.Id, fmt.Errorf("%w: unknown op %d", wire.ErrInvalidArgument, req.Op)))
		}
	}
	results := store.GetMany(refs)
	// The lease is checked after the reads: had it expired before them, it
	// is expired now too, however long this goroutine was paused in between
	// (docs/replication.md, "Fencing").
	var lease error
	if leased {
		lease = st.primary.leaseErr()
	}
	served := 0
	for i, res := range results {
		switch {
		case lease != nil && !gets[i].StaleOk:
			replies = append(replies, errResponse(gets[i].Id, lease))
		case res.Err != nil:
			replies = append(replies, errResponse(gets[i].Id, res.Err))
		default:
			replies = append(replies, &wire.Response{Id: gets[i].Id, Value: res.Value})
			served++
		}
	}
	n.metrics.observe(opGet, served, time.Since(start))
	if len(muts) > 0 {
		err := lease
		if err == nil {
			err = st.primary.admit()
		}
		if err == nil {
			muts, putIDs = n.retries(st.primary, muts, putIDs, r, start)
			err = n.write(ctx, st.primary, muts, putIDs, r, start)
		}
		if err != nil {
			for _, id := range putIDs {
				replies = append(replies, errResponse(id, err))
			}
		}
	}
	r.ready(replies)
}

// retries takes out of muts the tagged writes this node has seen before
// (docs/replication.md, "Idempotent writes"): a write whose entry is in the
// log is answered with that entry's outcome, once the watermark passes it;
// one whose first attempt is still on its way to the log gets that
// attempt's outcome. It returns the writes left to write, whose tags are
// now claimed, and their ids.
func (n *Node) retries(p *primary, muts []datastore.Mutation, ids []uint64, r *replier, start time.Time) ([]datastore.Mutation, []uint64) {
	fresh, freshIDs := muts[:0], ids[:0]
	retried := 0
	for i, m := range muts {
		if m.Tag.IsZero() {
			fresh, freshIDs = append(fresh, m), append(freshIDs, ids[i])
			continue
		}
		seq, first := n.dedupe.claim(m.Tag, n.inLog)
		if first == nil && seq == 0 {
			fresh, freshIDs = append(fresh, m), append(freshIDs, ids[i])
			continue
		}
		retried++
		w := pendingWrite{p: p, seq: seq, ids: []uint64{ids[i]}, dels: dels(m), start: start}
		r.queued()
		if first != nil {
			n.dedupe.join(first, func(seq uint64, err error) { w.seq = seq; r.written(w, err) })
		} else {
			r.written(w, nil)
		}
	}
	if retried > 0 {
		// Retries come after a failover or a lost connection: rare, and
		// worth a line.
		n.metrics.retries.Add(float64(retried))
		n.log.Info("answered retried writes from their first attempt instead of writing them again", "writes", retried)
	}
	return fresh, freshIDs
}

// write queues muts, admitted by p, for the group commit; once durable on
// this node, the replier answers them when every in-sync replica has them
// too (or at once, with --acks 1). An error means the write was refused and
// nothing queued. The tags of muts are claimed (retries); write reports
// their outcome.
func (n *Node) write(ctx context.Context, p *primary, muts []datastore.Mutation, ids []uint64, r *replier, start time.Time) error {
	if len(muts) == 0 {
		return nil
	}
	w := pendingWrite{p: p, ids: ids, dels: dels(muts...), start: start}
	r.queued()
	err := n.store().WriteAsync(ctx, muts, func(seq uint64, err error) {
		n.dedupe.written(muts, seq, err)
		if err == nil {
			p.recompute()
		}
		n.noteStoreErr(err)
		w.seq = seq
		r.written(w, err)
	})
	if err != nil {
		n.dedupe.written(muts, 0, err)
		n.noteStoreErr(err)
		r.written(pendingWrite{}, nil)
	}
	return err
}

// dels counts the deletes among muts.
func dels(muts ...datastore.Mutation) int {
	d := 0
	for i := range muts {
		if muts[i].Delete {
			d++
		}
	}
	return d
}

// opOf is the metrics' kind of a write request.
func opOf(op wire.Op) int {
	if op == wire.Op_DELETE {
		return opDelete
	}
	return opPut
}

// Scan serves one page of a group's keys in [start, end).
func (s *service) Scan(ctx context.Context, req *wire.ScanRequest) (*wire.ScanReply, error) {
	n := s.n
	start := time.Now()
	n.metrics.requests[opScan].Inc()
	if err := n.mig.holds.wait(ctx, req.Slots); err != nil {
		return &wire.ScanReply{Code: codeOf(err), Message: err.Error()}, nil
	}
	st := n.state.Load()
	var slots []int
	for _, rg := range req.Slots {
		for slot := int(rg.From); slot <= int(rg.To); slot++ {
			if slot >= len(st.table.Owners) {
				return &wire.ScanReply{Code: wire.Code_INVALID_ARGUMENT, Message: fmt.Sprintf("slot %d out of range", slot)}, nil
			}
			if refusal := n.route(st, slot, false); refusal != nil {
				return &wire.ScanReply{Code: refusal.Code, Message: refusal.Message, OwnerGroup: refusal.OwnerGroup, TableVersion: refusal.TableVersion}, nil
			}
			slots = append(slots, slot)
		}
	}
	limit := int(req.Limit)
	if limit <= 0 || limit > 10000 {
		limit = 10000
	}
	kvs, err := n.store().Scan(ctx, slots, req.Start, req.End, datastore.Limit{Entries: limit + 1, Bytes: shipBytes})
	if err == nil && len(slots) > 0 {
		err = st.primary.leaseErr() // after the read, as in handle
	}
	if err != nil {
		return &wire.ScanReply{Code: codeOf(err), Message: err.Error()}, nil
	}
	// A page cut by its size may have been the last: the client then asks
	// once more and gets an empty page.
	size := 0
	for _, kv := range kvs {
		size += len(kv.Key) + len(kv.Value)
	}
	reply := &wire.ScanReply{More: len(kvs) > limit || size >= shipBytes}
	if len(kvs) > limit {
		kvs = kvs[:limit]
	}
	reply.Items = make([]*wire.KeyValue, len(kvs))
	for i, kv := range kvs {
		reply.Items[i] = &wire.KeyValue{Key: kv.Key, Value: kv.Value}
	}
	n.metrics.observe(opScan, 1, time.Since(start))
	return reply, nil
}

// Status reports the node's role, state, log positions and, on a primary,
// its view of the members; when asked, what every slot holds.
func (s *service) Status(ctx context.Context, req *wire.NodeStatusRequest) (*wire.NodeStatus, error) {
	n := s.n
	st := n.state.Load()
	store := n.store()
	out := &wire.NodeStatus{Id: n.id, Group: n.cfg.Group, Role: "secondary", State: storeState(st),
		Epoch: epochOf(st.group), TableVersion: st.table.Version, CommittedSeq: store.CommittedSeq(), LastEpoch: lastEpoch(store)}
	// Not store.Stats: it walks every slot's pages, and the coordinator
	// asks the primaries in a migration every 10 ms during a hold.
	file, _, err := store.DiskBytes()
	switch {
	case err == nil:
		out.LastSeq, out.FileBytes = store.LastSeq(), file
		// Slots being imported or not yet dropped are not the group's.
		if out.Keys, err = n.ownedKeys(ctx, st, store, req.GetSlotCounts()); err != nil && st.storeErr == nil {
			return nil, err
		}
		// A failed store's counts would be wrong: its state says why there are none.
		if req.GetSlotCounts() && st.storeErr == nil {
			if out.SlotCounts, err = n.slotCounts(ctx, store); err != nil {
				return nil, err
			}
		}
	case st.storeErr == nil:
		return nil, fmt.Errorf("store files: %w", err)
	default:
		// A failed store may be closed already: report what is known.
		out.LastSeq = store.LastSeq()
	}
	switch {
	case !st.sessionOK:
		out.Role = "unknown"
	case st.primary != nil:
		out.Role = "primary"
		out.Isr, out.Followers = st.primary.followerStatus()
		out.Migrations = n.mig.report(ctx, st)
	}
	return out, nil
}

// lastEpoch is the epoch of the newest entry in store's log.
func lastEpoch(store *datastore.Store) uint64 {
	return epochAt(store.Epochs(), store.LastSeq())
}

// epochAt is the epoch the log entry seq was written in, by the epoch map.
func epochAt(epochs []datastore.EpochStart, seq uint64) uint64 {
	for i := len(epochs) - 1; i >= 0; i-- {
		if epochs[i].StartSeq <= seq {
			return epochs[i].Epoch
		}
	}
	return 0
}

// Handover moves the primary role to another member without losing an
// acknowledged write: see primary.handover.
func (s *service) Handover(ctx context.Context, req *wire.HandoverRequest) (*wire.HandoverReply, error) {
	p := s.n.state.Load().primary
	switch {
	case p == nil:
		return nil, wire.Errorf(wire.Code_NOT_PRIMARY, "node %s is not the primary of group %s", s.n.id, s.n.cfg.Group)
	case req.Epoch != p.epoch:
		// A request for another epoch was meant for another primary.
		return nil, wire.Errorf(wire.Code_STALE_EPOCH, "group %s is at epoch %d, not %d: read the group again", s.n.cfg.Group, p.epoch, req.Epoch)
	}
	reply, err := p.handover(ctx, req.To, false)
	if err != nil {
		return nil, wire.Errorf(wire.Code_UNAVAILABLE, "%v", err)
	}
	return reply, nil
}
