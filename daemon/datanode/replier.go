package datanode

import (
	"context"
	"sync"
	"time"

	"github.com/thunderyurts/thunderyurts/wire"
)

// replier collects one stream's answers and sends, each time, all that are
// ready as one BatchReply: reads at once, writes once committed. One
// goroutine waits for the watermark on behalf of every write of the stream.
type replier struct {
	mu       sync.Mutex
	out      []*wire.Response
	waiting  []pendingWrite // durable here, waiting for the watermark
	inflight int            // queued in the store, not yet durable
	closing  bool
	wake     chan struct{}
	room     chan struct{} // out was taken for sending
	stopped  chan struct{} // closed when run returns
	m        *metrics      // nil: not counted
}

// maxKeptOks bounds the success responses a replier keeps for reuse.
const maxKeptOks = 4096

// maxQueuedReplies bounds the replies queued on a stream for a client that
// reads them slower than it sends requests; with those in the send under
// way, a stream holds at most about twice as many.
const maxQueuedReplies = 64 << 10

// waitRoom waits until the replies queued for sending are under
// maxQueuedReplies; false when the stream ended meanwhile.
func (r *replier) waitRoom(ctx context.Context) bool {
	for {
		r.mu.Lock()
		full := len(r.out) >= maxQueuedReplies
		r.mu.Unlock()
		if !full {
			return true
		}
		select {
		case <-r.room:
		case <-r.stopped:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// pendingWrite is one batch's writes, durable on the primary up to seq;
// dels of them are deletes, the others puts, received at start.
type pendingWrite struct {
	p     *primary
	seq   uint64
	ids   []uint64
	dels  int
	start time.Time
}

func (r *replier) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *replier) ready(replies []*wire.Response) {
	if len(replies) == 0 {
		return
	}
	r.mu.Lock()
	r.out = append(r.out, replies...)
	r.mu.Unlock()
	r.signal()
}

func (r *replier) queued() {
	r.mu.Lock()
	r.inflight++
	r.mu.Unlock()
}

// written records the store's outcome of a queued write; a nil w.p only
// takes back a queued() whose write was refused.
func (r *replier) written(w pendingWrite, err error) {
	r.mu.Lock()
	r.inflight--
	switch {
	case w.p == nil:
	case err != nil:
		for _, id := range w.ids {
			r.out = append(r.out, errResponse(id, err))
		}
	default:
		r.waiting = append(r.waiting, w)
	}
	r.mu.Unlock()
	r.signal()
}

// close tells the replier no more requests come; run returns once every
// queued write is answered.
func (r *replier) close() {
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
	r.signal()
}

// run sends replies until the stream ends, or until it is closed and has
// nothing left to answer.
func (r *replier) run(ctx context.Context, rpc wire.DRPCData_StreamStream) error {
	reply := &wire.BatchReply{}
	// The success responses of writes, reused from one send to the next
	// (drpc marshals within Send): a primary answers every put. When
	// append moves them, those already taken stay valid where they were.
	var oks []wire.Response
	for {
		oks = oks[:0]
		r.mu.Lock()
		reply.Responses = append(reply.Responses[:0], r.out...)
		clear(r.out)
		r.out = r.out[:0]
		select {
		case r.room <- struct{}{}:
		default:
		}
		var wait, deposed <-chan struct{}
		var first *primary
		mixed := false // waiting writes of more than one primary role
		keep := r.waiting[:0]
		for _, w := range r.waiting {
			if w.p == first {
				// A role makes its writes durable in order: nothing after
				// its first uncommitted write is committed either.
				keep = append(keep, w)
				continue
			}
			done, advanced, err := w.p.outcome(w.seq)
			switch {
			case err != nil:
				for _, id := range w.ids {
					reply.Responses = append(reply.Responses, errResponse(id, err))
				}
			case done:
				for _, id := range w.ids {
					oks = append(oks, wire.Response{Id: id})
					reply.Responses = append(reply.Responses, &oks[len(oks)-1])
				}
				if r.m != nil {
					took := time.Since(w.start)
					r.m.observe(opPut, len(w.ids)-w.dels, took)
					r.m.observe(opDelete, w.dels, took)
				}
			default:
				keep = append(keep, w)
				if first == nil {
					first, wait, deposed = w.p, advanced, w.p.ctx.Done()
				}
				mixed = mixed || w.p != first
			}
		}
		clear(r.waiting[len(keep):])
		r.waiting = keep
		finished := r.closing && r.inflight == 0 && len(r.waiting) == 0
		r.mu.Unlock()
		if len(reply.Responses) > 0 {
			err := sendReplies(rpc, reply.Responses)
			clear(reply.Responses) // let the values go
			if cap(oks) > maxKeptOks {
				oks = nil // a burst's worth is not kept for the stream's life
			}
			if err != nil {
				return err
			}
			continue
		}
		if finished {
			return nil
		}
		// Only the first role's channels are watched; writes left from
		// another role (a role change mid-stream) are looked at again soon.
		var poll <-chan time.Time
		var timer *time.Timer
		if mixed {
			timer = time.NewTimer(10 * time.Millisecond)
			poll = timer.C
		}
		select {
		case <-r.wake:
		case <-wait:
		case <-deposed:
		case <-poll:
		case <-ctx.Done():
			return nil
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// sendReplies sends responses in messages of at most shipBytes of values
// (plus the one value that crosses it), so many large values read at once
// never make one message the client cannot take.
func sendReplies(rpc wire.DRPCData_StreamStream, responses []*wire.Response) error {
	for len(responses) > 0 {
		n, size := 0, 0
		for n < len(responses) && size < shipBytes {
			size += len(responses[n].Value)
			n++
		}
		if err := rpc.Send(&wire.BatchReply{Responses: responses[:n]}); err != nil {
			return err
		}
		responses = responses[n:]
	}
	return nil
}
