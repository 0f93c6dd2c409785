package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"storj.io/drpc/drpcconn"

	"github.com/thunderyurts/thunderyurts/wire"
)

// errPipeClosed reports that the streams to a node broke or were closed
// before an answer arrived; the request may or may not have been applied.
var errPipeClosed = errors.New("connection to node lost")

// maxBatchBytes keeps one Batch within what a data node accepts
// (wire.DataMessageBytes).
const maxBatchBytes = wire.MaxBatchBytes

// maxBatchRequests bounds the requests in one Batch so a slow batch does not
// hold back the replies of the ones queued after it for long.
const maxBatchRequests = wire.MaxBatchRequests

// errCallTimedOut: no answer came before the call's deadline.
var errCallTimedOut = fmt.Errorf("no answer in time: %w", context.DeadlineExceeded)

// errNodeSilent closes a pipe whose node answered nothing, not even a
// keepalive, for too long: the process is stopped or the network between
// is cut. The kernel of a stopped process still acknowledges TCP, so only
// an answer from the node itself tells.
var errNodeSilent = errors.New("node stopped answering")

// The keepalive: a pipe that has heard nothing from its node for
// keepaliveAfter sends a ping (pingLoop), and so does a suspect pipe at
// once. A ping unanswered for suspectAfter makes the pipe suspect (the
// client polls the routes), and for silentAfter closes it: its requests are
// retried, on the new primary once the routes name one. A busy pipe hears
// replies all the time and sends no pings; an idle one sends one a second.
const (
	keepaliveAfter = time.Second
	suspectAfter   = 250 * time.Millisecond
	silentAfter    = time.Second
)

// call is one request waiting for its answer.
type call struct {
	req      *wire.Request
	resp     *wire.Response
	err      error
	done     chan struct{}
	deadline time.Time // zero: none
}

// pipe multiplexes the requests for one node over a few long-lived Stream
// calls: every request queued while the previous batch was being written
// leaves in the next batch. When one stream breaks the whole pipe is closed;
// the client then dials a new one.
type pipe struct {
	addr    string
	queue   chan *call
	ctx     context.Context
	cancel  context.CancelCauseFunc
	wg      sync.WaitGroup
	streams []*stream
	born    time.Time // sendingSince and heard count from here (monotonic)
	// heard is when the last reply arrived, in nanoseconds since birth.
	heard atomic.Int64
	// suspect: a request timed out or a ping went unanswered; cleared when
	// the node answers a ping.
	suspect   atomic.Bool
	onSuspect func()
	pings     chan struct{} // wakes pingLoop
}

// pipeConfig says how to connect a pipe and what it tells its client.
type pipeConfig struct {
	streams int
	dial    wire.DialOptions
	// A send that blocks for longer than stuckAfter (at least minStuck)
	// closes the pipe: the node stopped reading, and requests queued behind
	// the send would otherwise wait for it past their deadlines.
	stuckAfter time.Duration
	// suspect starts the pipe suspect: the node's previous pipe went silent.
	suspect bool
	// onSuspect is called whenever the pipe becomes suspect.
	onSuspect func()
}

// dialPipe connects cfg.streams streams to addr.
func dialPipe(ctx context.Context, addr string, cfg pipeConfig) (*pipe, error) {
	pctx, cancel := context.WithCancelCause(context.Background())
	p := &pipe{addr: addr, queue: make(chan *call, 4096), ctx: pctx, cancel: cancel, born: time.Now(),
		onSuspect: cfg.onSuspect, pings: make(chan struct{}, 1)}
	for i := 0; i < cfg.streams; i++ {
		s, err := openStream(ctx, pctx, addr, cfg.dial)
		if err != nil {
			p.close(err)
			return nil, err
		}
		p.streams = append(p.streams, s)
		p.wg.Add(2)
		go func() { defer p.wg.Done(); p.sendLoop(s) }()
		go func() { defer p.wg.Done(); p.recvLoop(s) }()
	}
	if cfg.suspect {
		p.markSuspect()
	}
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.sweep(cfg.stuckAfter) }()
	go func() { defer p.wg.Done(); p.pingLoop(cfg.dial) }()
	return p, nil
}

type stream struct {
	conn    *drpcconn.Conn
	rpc     wire.DRPCData_StreamClient
	mu      sync.Mutex
	pending map[uint64]*call
	nextID  uint64
	// sendingSince is when the send in progress began, in nanoseconds
	// since the pipe's birth plus one; 0 between sends.
	sendingSince atomic.Int64
}

// sweepEvery is how often a pipe fails the calls past their deadline.
const sweepEvery = 10 * time.Millisecond

// minStuck is the shortest blocked send that closes a pipe: a large batch
// on a slow link may take a while.
const minStuck = 10 * time.Second

func (p *pipe) sinceBirth() time.Duration { return time.Since(p.born) }

// sweep fails the calls whose deadline passed while they waited for an
// answer, runs the keepalive, and closes the pipe when a send is stuck or
// the node went silent, until the pipe closes. One sweeper per pipe
// replaces a timer per request.
func (p *pipe) sweep(stuckAfter time.Duration) {
	stuckAfter = max(stuckAfter, minStuck)
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	var ka keepalive
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			if err := p.keepalive(&ka); err != nil {
				p.close(err)
				return
			}
			now := time.Now()
			for _, s := range p.streams {
				if since := s.sendingSince.Load(); since != 0 && p.sinceBirth()-time.Duration(since-1) > stuckAfter {
					p.close(fmt.Errorf("send blocked for over %v", stuckAfter))
					return
				}
				s.mu.Lock()
				for id, c := range s.pending {
					if !c.deadline.IsZero() && now.After(c.deadline) {
						delete(s.pending, id)
						c.err = errCallTimedOut
						close(c.done)
					}
				}
				s.mu.Unlock()
			}
		}
	}
}

// keepalive is the sweeper's record of its ping in flight.
type keepalive struct {
	pinging bool
	sentAt  time.Duration // since the pipe's birth
}

// keepalive pings a node that has been quiet for keepaliveAfter, or at once
// when the pipe is suspect; any reply after the ping answers it. It returns
// errNodeSilent when a ping stays unanswered for silentAfter.
func (p *pipe) keepalive(ka *keepalive) error {
	now := p.sinceBirth()
	heard := time.Duration(p.heard.Load())
	if ka.pinging {
		waited := now - ka.sentAt
		switch {
		case heard > ka.sentAt:
			ka.pinging = false
			p.suspect.Store(false)
		case waited >= silentAfter:
			return fmt.Errorf("%w: no reply to a keepalive in %v", errNodeSilent, silentAfter)
		case waited >= suspectAfter:
			p.markSuspect()
			return nil
		default:
			return nil
		}
	}
	if now-heard < keepaliveAfter && !p.suspect.Load() {
		return nil
	}
	select {
	case p.pings <- struct{}{}:
	default: // the previous ping is still under way
	}
	ka.pinging, ka.sentAt = true, now
	return nil
}

// pingLoop sends the keepalive's pings, each a PING request that a node
// answers at once (before routing, without touching its store; a node
// older than PING refuses it as a GET of the empty key, as quickly), and
// records the replies in heard. The pings travel
// on a stream and connection of their own, dialed at the first ping: on
// the data streams they would wait behind large batches, and a node slow to
// get through those would pass for a silent one.
func (p *pipe) pingLoop(dial wire.DialOptions) {
	ping := &wire.Batch{Requests: []*wire.Request{{Op: wire.Op_PING}}}
	var s *stream
	defer func() {
		if s != nil {
			_ = s.conn.Close()
		}
	}()
	for {
		select {
		case <-p.pings:
		case <-p.ctx.Done():
			return
		}
		if s == nil {
			var err error
			if s, err = openStream(p.ctx, p.ctx, p.addr, dial); err != nil {
				continue // no reply: the sweeper judges
			}
		}
		err := s.rpc.Send(ping)
		if err == nil {
			_, err = s.rpc.Recv()
		}
		if err != nil {
			_ = s.conn.Close()
			s = nil
			continue
		}
		p.heard.Store(int64(p.sinceBirth()))
	}
}

// markSuspect makes the pipe suspect and tells the client, once per episode.
func (p *pipe) markSuspect() {
	if p.suspect.CompareAndSwap(false, true) {
		p.onSuspect()
	}
}

// silent reports whether the keepalive closed the pipe.
func (p *pipe) silent() bool { return errors.Is(context.Cause(p.ctx), errNodeSilent) }

func openStream(dialCtx, pipeCtx context.Context, addr string, dial wire.DialOptions) (*stream, error) {
	conn, err := wire.Dial(dialCtx, addr, dial)
	if err != nil {
		return nil, err
	}
	rpc, err := wire.NewDRPCDataClient(conn).Stream(pipeCtx)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("open stream to %s: %w", addr, err)
	}
	return &stream{conn: conn, rpc: rpc, pending: make(map[uint64]*call)}, nil
}

// do queues req and waits for its answer, the pipe's end, ctx or deadline
// (zero: none), whichever comes first.
func (p *pipe) do(ctx context.Context, req *wire.Request, deadline time.Time) (*wire.Response, error) {
	c := &call{req: req, done: make(chan struct{}), deadline: deadline}
	select {
	case p.queue <- c:
	default: // the queue is full
		select {
		case p.queue <- c:
		case <-p.ctx.Done():
			return nil, p.closedErr()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	select {
	case <-c.done:
		return c.resp, c.err
	case <-p.ctx.Done():
		return nil, p.closedErr()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *pipe) closedErr() error {
	return fmt.Errorf("%s: %w: %v", p.addr, errPipeClosed, context.Cause(p.ctx))
}

func (p *pipe) closed() bool { return p.ctx.Err() != nil }

func (p *pipe) close(cause error) {
	p.cancel(cause)
}

// wait blocks until every stream goroutine of the pipe has stopped.
func (p *pipe) wait() { p.wg.Wait() }

func (p *pipe) sendLoop(s *stream) {
	defer func() { _ = s.conn.Close() }()
	batch := &wire.Batch{}
	var calls []*call
	for {
		var first *call
		select {
		case first = <-p.queue:
		case <-p.ctx.Done():
			return
		}
		calls = p.gather(append(calls[:0], first))
		batch.Requests = batch.Requests[:0]
		s.mu.Lock()
		for _, c := range calls {
			s.nextID++
			c.req.Id = s.nextID
			s.pending[c.req.Id] = c
			batch.Requests = append(batch.Requests, c.req)
		}
		s.mu.Unlock()
		s.sendingSince.Store(int64(p.sinceBirth()) + 1)
		err := s.rpc.Send(batch)
		s.sendingSince.Store(0)
		if err != nil {
			p.close(fmt.Errorf("send: %w", err))
			return
		}
	}
}

// gather adds to calls what else is queued, up to the batch bounds.
func (p *pipe) gather(calls []*call) []*call {
	size := 0
	for _, c := range calls {
		size += len(c.req.Key) + len(c.req.Value)
	}
	drain := func() {
		for len(calls) < maxBatchRequests && size < maxBatchBytes {
			select {
			case c := <-p.queue:
				calls = append(calls, c)
				size += len(c.req.Key) + len(c.req.Value)
			default:
				return
			}
		}
	}
	drain()
	// Callers woken by the previous batch's replies are runnable but have
	// not queued yet; yielding lets them join this batch. This follows the
	// load without a timer: when nothing else is runnable the batch leaves
	// at once.
	for more := true; more && len(calls) < maxBatchRequests && size < maxBatchBytes; {
		n := len(calls)
		runtime.Gosched()
		drain()
		more = len(calls) > n
	}
	return calls
}

func (p *pipe) recvLoop(s *stream) {
	for {
		reply, err := s.rpc.Recv()
		if err != nil {
			p.close(fmt.Errorf("receive: %w", err))
			_ = s.conn.Close()
			return
		}
		p.heard.Store(int64(p.sinceBirth()))
		s.mu.Lock()
		for _, resp := range reply.Responses {
			if c, ok := s.pending[resp.Id]; ok {
				delete(s.pending, resp.Id)
				c.resp = resp
				close(c.done)
			}
		}
		s.mu.Unlock()
	}
}
