package datastore

import (
	"context"
	"sync/atomic"
	"time"
)

// The memory of unapplied entries comes back only when an apply round
// ends: the tail frees entries in log order, and a round applies them in
// key order. With the overlay's limit alone, writers faster than the
// rounds filled the room under the limit early in a round and then all
// waited for its end: over ten million keys, where a round takes
// seconds, writes stopped for up to 3 s every eight to ten seconds, while
// the p99 stayed at 12 ms. A pacer instead spreads the room left over the
// time the round is expected to take still, as the kernel's dirty-page
// throttling spreads writers over writeback: writers slower than that
// pace never wait, faster ones wait a little each, and the limit stays
// the bound.
//
// Only the primary's writes for clients are paced (WriteAsync): a
// follower's appends follow the primary's pace already, and the
// engine's own writes (a migration's barrier, a slot's drop, a
// migration's imported keys) must not wait behind clients; imports take
// from the same room, so clients are paced tighter while one runs.
//
// Two estimates of the time left, the longer one counting: the round's
// own pace so far, once it has committed a part, and the last round's,
// if that round was not much smaller. Rounds follow each other under
// load; without the last one's pace, writers filled the room during a
// round's first part.
type pacer struct {
	// Written by the applier without the store's lock: its thread runs at
	// low priority, and every request would wait behind it for the lock.
	round atomic.Pointer[paceRound] // in progress; nil when none runs
	last  atomic.Pointer[paceRound] // the last round that applied
	// Under the store's mu: the pacing clock (when the next admitted byte
	// is due) and the round it counts for.
	next      time.Time
	nextRound *paceRound
}

// paceRound is one apply round, as the pacer sees it.
type paceRound struct {
	start time.Time
	keys  int
	// short is how much less than a full round it frees (0 or less): the
	// room is shorter by as much, so that a full round after it still
	// finds a full round's room.
	short int64
	done  atomic.Int64  // keys its committed parts hold
	took  time.Duration // once it ended
	ended chan struct{} // closed when it applied
}

// paceHeadroom: the pace spreads the room up to all but 1/paceHeadroom of
// the limit. A follower is not paced: it takes what the primary sends,
// and its rounds run at their own speed, a little out of phase with the
// primary's. A follower at its limit stops acknowledging until its round
// ends, and every client write waiting for all replicas stops with it.
// Paced to the whole limit, the three nodes of a group ended half their
// rounds within 5 % of it; over ten million keys the followers reached
// theirs now and then, and puts waited up to 1.9 s.
const paceHeadroom = 8

// Bounds of the pace. paceBurst is how far behind now the pacing clock
// may fall: writers under the pace pass without waiting even if they come
// in bursts. paceMaxWait bounds one write's wait, however large the write
// or wrong the estimate: from there on, the limit decides.
const (
	paceBurst   = 20 * time.Millisecond
	paceMaxWait = 250 * time.Millisecond
)

// begin records that a round of keys starts at now; it frees frees
// bytes when it ends, and a full round full.
func (p *pacer) begin(now time.Time, keys int, frees, full int64) *paceRound {
	r := &paceRound{start: now, keys: keys, short: min(0, frees-full), ended: make(chan struct{})}
	p.round.Store(r)
	return r
}

// progress records that the round's committed parts hold done keys.
func (r *paceRound) progress(done int) { r.done.Store(int64(done)) }

// end records that round r ended at now, applied if ok. The writers it
// paced wake only if it applied: after a failure they find the store
// failed when their wait ends.
func (p *pacer) end(r *paceRound, now time.Time, ok bool) {
	if ok {
		r.took = now.Sub(r.start)
		p.last.Store(r)
	}
	p.round.CompareAndSwap(r, nil)
	if ok {
		close(r.ended)
	}
}

// running reports whether a round is in progress.
func (p *pacer) running() bool { return p.round.Load() != nil }

// delay admits cost bytes, with used of the limit's bytes taken, and
// returns how long their writer waits first (the round's remaining room
// at the pace that lasts until its expected end), and the channel closed
// when the round ends, which ends the wait. The store's mu is held.
func (p *pacer) delay(now time.Time, used, limit, cost int64) (time.Duration, <-chan struct{}) {
	r := p.round.Load()
	if r == nil {
		return 0, nil // no round to wait for
	}
	room := limit + r.short - used
	elapsed := now.Sub(r.start)
	var left time.Duration
	if done := int(r.done.Load()); done >= r.keys {
		return 0, nil // the round is about to end
	} else if done > 0 {
		left = time.Duration(float64(elapsed) * float64(r.keys-done) / float64(done))
	}
	if last := p.last.Load(); last != nil && last.keys > 0 && last.keys >= r.keys/4 {
		left = max(left, time.Duration(float64(last.took)*float64(r.keys)/float64(last.keys))-elapsed)
	}
	if left <= 0 {
		return 0, nil // no estimate, or the round is due to end
	}
	// Past the room (into the followers' headroom, or into the next
	// round's after a small round) every write waits the most. Within
	// it, a write's own step counts as burst: a large write from a writer
	// under the pace does not wait either.
	step, burst := paceMaxWait, paceBurst
	if room > 0 {
		// In floating point: a write far larger than the room would
		// overflow.
		if s := float64(left) * float64(cost) / float64(room); s < float64(paceMaxWait) {
			step = time.Duration(s)
		}
		burst = max(burst, step)
	}
	if p.nextRound != r {
		p.nextRound, p.next = r, time.Time{}
	}
	if floor := now.Add(-burst); p.next.Before(floor) {
		p.next = floor
	}
	p.next = p.next.Add(step)
	if end := now.Add(min(left, paceMaxWait)); p.next.After(end) {
		p.next = end
	}
	return max(0, p.next.Sub(now)), r.ended
}

// waitPace waits d, or until the round ends (ended), the store closes or
// fails, or ctx ends.
func (s *Store) waitPace(ctx context.Context, d time.Duration, ended <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ended:
	case <-s.stop:
	case <-s.failed:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}
