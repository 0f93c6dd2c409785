package datanode

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/wire"
)

// holdBound is how long the source's primary holds a migration's requests
// before it releases the hold itself (a compare-and-set of the slot table
// back to copy): requests wait at most about this long.
const holdBound = time.Second

// holds are the source primary's holds: while the slot table says a
// migration from this group is in hold, requests for its slots are queued,
// neither answered nor refused, until the table changes; then they are
// routed again against the new table (MOVED after a switch, served after
// a release). Requests for other slots never wait.
type holds struct {
	// gate is held shared by every request batch from before its routing
	// until its writes are queued in the store, and exclusively while a
	// hold begins: every write admitted before the hold is then in the log
	// before the hold's barrier.
	gate sync.RWMutex
	mu   sync.Mutex
	byID map[string]*hold
	// active is len(byID), so that batches pass without taking mu while
	// nothing is held.
	active atomic.Int32
	// pending are requests for slots the node's table already has in hold
	// while its hold has not begun yet (a primary that just took over, or
	// a table that just changed): reconcile routes them again once it has.
	pending []parkedBatch
	// longest is the longest hold so far, for the metrics.
	longest time.Duration
	// pauses is, per migration in the node's table, how its holds on this
	// node went, for the source's report.
	pauses map[string]pause
}

// pause is what the holds of one migration cost its slots' requests: how
// many holds ended (released or switched) and how long the last one held
// them, from the start of holding to its end.
type pause struct {
	holds uint32
	last  time.Duration
}

// hold is one migration's hold on this primary.
type hold struct {
	p        *primary
	m        coord.Migration
	started  time.Time
	released chan struct{} // closed when the hold ends
	cancel   context.CancelFunc
	parked   []parkedBatch

	// The frozen report: once the barrier's seq F is committed and applied,
	// F and the slots' digests there. Under holds.mu.
	frozenSeq uint64
	digests   []*wire.SlotDigest
	err       error
	// When the barrier F was committed (the watermark reached it) and when
	// the digests at F were taken: the source's
	// phases of the hand-over, for the log line at the hold's end.
	committed, frozen time.Time
}

// holdMarkName names the mark a hold's barrier writes: the source ships
// the position past it to the target at once.
func holdMarkName(id string) string { return markName(id) + "/hold" }

// parkedBatch is the held part of one request batch of a stream.
type parkedBatch struct {
	ctx  context.Context
	svc  *service
	reqs []*wire.Request
	r    *replier
}

// admit takes the held requests out of batch and parks them; the rest is
// served now. done must be called once the rest is routed and its writes
// queued.
func (h *holds) admit(ctx context.Context, s *service, batch *wire.Batch, r *replier) (rest *wire.Batch, done func()) {
	h.gate.RLock()
	n := s.n
	st := n.state.Load()
	// A primary's table in hold counts before its hold begins.
	tableHolds := st.primary != nil && slices.ContainsFunc(st.table.Migrations, func(m coord.Migration) bool {
		return isHeld(&m, n.cfg.Group)
	})
	if h.active.Load() == 0 && !tableHolds {
		return batch, h.gate.RUnlock
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var keep, held []*wire.Request
	var into *hold
	for _, req := range batch.Requests {
		if req.Op != wire.Op_PING {
			slot := coord.SlotOf(req.Key, n.slots)
			hd := h.holding(slot)
			if hd != nil || tableHolds && isHeld(st.table.MigrationOf(slot), n.cfg.Group) {
				// The batch's memory is reused once handled.
				held = append(held, wire.CloneRequest(req))
				// One batch's held requests all wait for the first hold
				// they hit; routed again, the others are held anew.
				if into == nil {
					into = hd
				}
				continue
			}
		}
		keep = append(keep, req)
	}
	if len(held) == 0 {
		return batch, h.gate.RUnlock
	}
	r.queued() // the stream's replier waits for them before it ends
	pb := parkedBatch{ctx: ctx, svc: s, reqs: held, r: r}
	if into != nil {
		into.parked = append(into.parked, pb)
	} else {
		h.pending = append(h.pending, pb)
		n.mig.wake()
	}
	n.metrics.held.Add(float64(len(held)))
	return &wire.Batch{Requests: keep}, h.gate.RUnlock
}

// isHeld says whether m is a migration from group in hold.
func isHeld(m *coord.Migration, group string) bool {
	return m != nil && m.From == group && m.State == coord.MigrationHold
}

// holding returns the hold of slot, nil if none. h.mu is held.
func (h *holds) holding(slot int) *hold {
	for _, hd := range h.byID {
		if hd.m.Has(slot) {
			return hd
		}
	}
	return nil
}

// wait blocks while a hold covers any of the ranges (a scan's).
func (h *holds) wait(ctx context.Context, ranges []*wire.SlotRange) error {
	for h.active.Load() > 0 {
		h.mu.Lock()
		var hd *hold
		for _, x := range h.byID {
			for _, rg := range ranges {
				if int(rg.From) <= x.m.Last && int(rg.To) >= x.m.First {
					hd = x
				}
			}
		}
		h.mu.Unlock()
		if hd == nil {
			return nil
		}
		select {
		case <-hd.released:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// reconcile begins the holds st's table asks of this node's primary and
// ends the others.
func (h *holds) reconcile(mg *migrations, st *state) {
	group := mg.n.cfg.Group
	p := st.primary
	h.mu.Lock()
	var ended []*hold
	for id, hd := range h.byID {
		m := st.table.Migration(id)
		if p != hd.p || !isHeld(m, group) || m.Attempt != hd.m.Attempt {
			delete(h.byID, id)
			h.active.Add(-1)
			ended = append(ended, hd)
		}
	}
	for id := range h.pauses {
		if st.table.Migration(id) == nil {
			delete(h.pauses, id)
		}
	}
	var begin []coord.Migration
	if p != nil {
		for _, m := range st.table.Migrations {
			if isHeld(&m, group) && h.byID[m.ID] == nil {
				begin = append(begin, m)
			}
		}
	}
	h.mu.Unlock()
	for _, hd := range ended {
		h.release(mg, hd)
	}
	for _, m := range begin {
		h.begin(mg, p, m)
	}
	h.mu.Lock()
	pending := h.pending
	h.pending = nil
	h.mu.Unlock()
	redispatch(pending)
}

// begin starts holding m's slots on primary p, then writes the barrier and
// reports frozen, and releases the hold itself if it lasts past holdBound.
func (h *holds) begin(mg *migrations, p *primary, m coord.Migration) {
	ctx, cancel := context.WithCancel(p.ctx)
	hd := &hold{p: p, m: m, started: time.Now(), released: make(chan struct{}), cancel: cancel}
	// Wait for the batches being routed: their writes are queued before
	// the barrier.
	h.gate.Lock()
	h.mu.Lock()
	h.byID[m.ID] = hd
	h.active.Add(1)
	h.mu.Unlock()
	h.gate.Unlock()
	mg.n.log.Info("holding the requests of a migration's slots", "migration", m.String(), "attempt", m.Attempt)
	mg.wg.Add(2)
	go func() { defer mg.wg.Done(); h.freeze(ctx, mg, hd) }()
	go func() { defer mg.wg.Done(); h.bound(ctx, mg, hd) }()
}

// release ends a hold that reconcile took out of byID: the held requests
// are routed again against the node's current state.
func (h *holds) release(mg *migrations, hd *hold) {
	hd.cancel()
	h.mu.Lock()
	parked := hd.parked
	hd.parked = nil
	close(hd.released)
	held := time.Since(hd.started)
	h.longest = max(h.longest, held)
	pz := h.pauses[hd.m.ID]
	h.pauses[hd.m.ID] = pause{holds: pz.holds + 1, last: held}
	phases := hd.phases(hd.started.Add(held))
	h.mu.Unlock()
	n := redispatch(parked)
	mg.n.log.Info("hold ended", append([]any{"migration", hd.m.String(), "attempt", hd.m.Attempt, "held", held.Round(time.Millisecond), "requests", n}, phases...)...)
}

// phases is how the hold's time went on this node, up to its end: until
// the barrier was committed (barrier), until the digests at it were taken
// (digests), and from then until the table
// switched or released the hold (release: the target's catch-up, the
// coordinator's comparison and compare-and-set, and the table's watch).
// None of a hold that never froze. h.mu is held.
func (hd *hold) phases(end time.Time) []any {
	if hd.frozen.IsZero() {
		return nil
	}
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return []any{"barrier", ms(hd.committed.Sub(hd.started)), "digests", ms(hd.frozen.Sub(hd.committed)), "release", ms(end.Sub(hd.frozen))}
}

// redispatch routes parked requests again, against the node's current
// state, and returns how many there were.
func redispatch(parked []parkedBatch) int {
	n := 0
	for _, pb := range parked {
		n += len(pb.reqs)
		pb.svc.handle(pb.ctx, &wire.Batch{Requests: pb.reqs}, pb.r)
		pb.r.written(pendingWrite{}, nil) // takes back admit's queued()
	}
	return n
}

// freeze writes the hold's barrier through the commit path: every write
// admitted before the hold has a lower seq. Once the barrier F is committed
// the slots cannot change any more while the hold lasts, and their digests
// at F (merging what is not applied yet) are the report the switch
// compares.
func (h *holds) freeze(ctx context.Context, mg *migrations, hd *hold) {
	barrier := datastore.Mutation{Mark: true, Key: []byte(holdMarkName(hd.m.ID)), Value: fmt.Appendf(nil, "%d", hd.m.Attempt)}
	for backoff := retryMin; ; backoff = min(2*backoff, retryMax) {
		f, err := hd.p.commitWrite(ctx, []datastore.Mutation{barrier})
		committed := time.Now()
		var digests []datastore.SlotDigest
		if err == nil {
			_, digests, err = mg.n.store().CommittedSlotDigests(ctx, hd.m.Slots(), f)
		}
		if ctx.Err() != nil {
			return
		}
		h.mu.Lock()
		if hd.err = err; err == nil {
			hd.frozenSeq, hd.digests = f, wireDigests(digests)
			hd.committed, hd.frozen = committed, time.Now()
		}
		h.mu.Unlock()
		if err == nil {
			mg.n.log.Info("migration frozen", "migration", hd.m.String(), "frozen_seq", f)
			return
		}
		mg.n.log.Warn("migration barrier failed; retrying", "migration", hd.m.String(), "err", err)
		if clock.Sleep(ctx, backoff) != nil {
			return
		}
	}
}

// bound releases the hold past holdBound: only if the table still has
// this hold (state hold, same attempt), so it can never undo a switch.
func (h *holds) bound(ctx context.Context, mg *migrations, hd *hold) {
	if clock.Sleep(ctx, holdBound) != nil {
		return
	}
	for ctx.Err() == nil {
		released := false
		_, err := mg.n.cfg.Cluster.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
			m := t.Migration(hd.m.ID)
			released = m != nil && m.State == coord.MigrationHold && m.Attempt == hd.m.Attempt
			if !released {
				return coord.ErrNoChange
			}
			m.State, m.Attempt, m.Since = coord.MigrationCopy, m.Attempt+1, time.Now().UTC()
			m.Error = fmt.Sprintf("hold ran past %s: the source group %s released it (attempt %d)", holdBound, mg.n.cfg.Group, hd.m.Attempt)
			return nil
		})
		if err == nil {
			if released {
				mg.n.log.Warn("hold ran past its bound; released it", "migration", hd.m.String(), "attempt", hd.m.Attempt)
			}
			return
		}
		mg.n.log.Warn("could not release a hold past its bound; retrying", "migration", hd.m.String(), "err", err)
		if clock.Sleep(ctx, retryMin) != nil {
			return
		}
	}
}

// report fills a source's report on migration m in hold.
func (h *holds) report(r *wire.MigrationStatus, p *primary, m coord.Migration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hd := h.byID[m.ID]
	if hd == nil || hd.p != p || hd.m.Attempt != m.Attempt {
		return // not holding yet: still serving
	}
	r.Phase = "held"
	switch {
	case hd.frozenSeq > 0:
		r.Phase, r.FrozenSeq, r.Digests = "frozen", hd.frozenSeq, hd.digests
	case hd.err != nil:
		r.Error = hd.err.Error()
	}
}

// reportPauses adds to a source's report how the holds of migration id
// went on this node.
func (h *holds) reportPauses(r *wire.MigrationStatus, id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	pz := h.pauses[id]
	r.Holds, r.LastPauseMicros = pz.holds, pz.last.Microseconds()
}

// longestHold is the longest hold so far, ended or not.
func (h *holds) longestHold() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	longest := h.longest
	for _, hd := range h.byID {
		longest = max(longest, time.Since(hd.started))
	}
	return longest
}
