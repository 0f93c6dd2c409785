package datanode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/wire"
)

// errDeposed: the primary role ended (a new epoch, a lost session, a
// handover) before the operation finished.
var errDeposed = errors.New("no longer the primary")

// primary is the replication side of a node while it leads its group for
// one epoch: it tracks each member's acknowledged position, computes the
// high watermark (what every in-sync replica has made durable), keeps the
// in-sync set current in ZooKeeper, and wakes writers whose entries are
// committed.
type primary struct {
	n     *Node
	epoch uint64
	// session is the ZooKeeper session the node leads in; it serves only
	// while that session's lease holds (leaseErr).
	session int64
	ctx     context.Context
	cancel  context.CancelCauseFunc
	wg      sync.WaitGroup

	// recomputeMu orders watermark moves, so the store and the waiters see
	// them in the same order.
	recomputeMu sync.Mutex
	mu          sync.Mutex
	isr         []string // as last written to ZooKeeper, including this node
	members     map[string]*member
	committed   uint64
	advanced    chan struct{} // closed and replaced when committed or the ISR moves
	draining    atomic.Bool   // a handover stopped serving

	// takeover is the log end when this node took the role. Entries up to
	// it may include writes the previous primary acknowledged, which this
	// node cannot tell apart, so it serves nothing until the in-sync
	// replicas hold all of them (Raft's "commit an entry of your own term").
	takeover uint64
	ready    chan struct{} // closed once committed >= takeover
}

// member is what the primary knows of one member of its group.
type member struct {
	id        string
	acked     uint64 // durable on the member
	connected bool
	// caughtUpAt is when the member last held everything the primary had
	// at that time; its lag is measured from it (Kafka's
	// replica.lag.time.max.ms).
	caughtUpAt time.Time
	samples    []logSample
	stream     int // generation of the attached stream, to detach the right one
	closeOld   func()
	// sent is what the attached stream has shipped; shipped the most any
	// earlier stream of this role shipped (see attach).
	sent    *atomic.Uint64
	shipped uint64
	// joining is set while a compare-and-set adds the member to the ISR:
	// the watermark waits for it from the decision on, so it cannot enter
	// the ISR lacking a write acknowledged meanwhile (Kafka's maximal ISR).
	joining bool
}

type logSample struct {
	seq uint64
	at  time.Time
}

func newPrimary(n *Node, epoch uint64, isr []string, session int64) *primary {
	p := &primary{n: n, epoch: epoch, session: session, members: map[string]*member{}, advanced: make(chan struct{}),
		isr: slices.Clone(isr), committed: n.store().CommittedSeq(), takeover: n.store().LastSeq(), ready: make(chan struct{})}
	if p.committed >= p.takeover {
		close(p.ready)
	}
	if !slices.Contains(p.isr, n.id) {
		p.isr = append(p.isr, n.id)
	}
	now := time.Now()
	for _, id := range p.isr {
		if id != n.id {
			// ISR members get the lag bound to connect before they are dropped.
			p.members[id] = &member{id: id, caughtUpAt: now}
		}
	}
	p.ctx, p.cancel = context.WithCancelCause(n.ctx)
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.maintainISR() }()
	p.recompute()
	return p
}

// stop ends the role: writers still waiting fail, members' streams close.
func (p *primary) stop(cause error) {
	p.cancel(cause)
	p.wg.Wait()
}

// admit says whether a write may start now.
func (p *primary) admit() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.ctx.Err() != nil:
		return fmt.Errorf("%w: %w", wire.ErrUnavailable, errDeposed)
	case p.draining.Load():
		return fmt.Errorf("%w: handing over the primary role", wire.ErrNotPrimary)
	case len(p.isr) < p.n.cfg.MinInsync:
		return fmt.Errorf("%w: %d in-sync replica(s) of group %s, --min-insync is %d", wire.ErrUnavailable, len(p.isr), p.n.cfg.Group, p.n.cfg.MinInsync)
	}
	return nil
}

// recompute moves the high watermark to what every in-sync replica holds
// durably (with acks=1, what this node holds), then wakes the writers. The
// store learns the watermark before any writer is woken, so a client that
// sees its write acknowledged reads it back.
func (p *primary) recompute() {
	p.recomputeMu.Lock()
	defer p.recomputeMu.Unlock()
	if p.ctx.Err() != nil {
		return // the store may already follow another primary
	}
	durable := p.n.store().DurableSeq()
	p.mu.Lock()
	hw := durable
	if p.n.cfg.Acks != AcksOne {
		for _, id := range p.isr {
			if f := p.members[id]; id != p.n.id && f != nil {
				hw = min(hw, f.acked)
			} else if id != p.n.id {
				hw = 0
			}
		}
		for _, f := range p.members {
			if f.joining {
				hw = min(hw, f.acked)
			}
		}
		if len(p.isr) < p.n.cfg.MinInsync {
			// Too few replicas hold the writes: refuse rather than
			// acknowledge them with weaker durability (waitCommitted).
			hw = p.committed
		}
	}
	if hw <= p.committed {
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.n.store().SetCommitted(hw)
	p.mu.Lock()
	p.committed = hw
	p.signalLocked()
	becameReady := hw >= p.takeover && !isClosed(p.ready)
	p.mu.Unlock()
	if becameReady {
		close(p.ready)
		p.n.log.Info("serving: the in-sync replicas hold the whole log taken over", "seq", p.takeover, "epoch", p.epoch)
	}
}

// signalLocked wakes everyone waiting on advanced. p.mu must be held.
func (p *primary) signalLocked() {
	close(p.advanced)
	p.advanced = make(chan struct{})
}

// serving reports whether the primary has committed everything it took over.
// A primary whose role ended or that is handing over serves nothing, even
// before the node's state forgets it.
func (p *primary) serving() bool {
	return isClosed(p.ready) && p.ctx.Err() == nil && !p.draining.Load()
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// leaseShare is the part of the session timeout, counted from the send time
// of the newest request ZooKeeper answered in the primary's session, for
// which the primary serves: the rest is the margin for the two clocks'
// rates (docs/replication.md, "Fencing").
const leaseShare = 2.0 / 3

// leaseErr says why the primary must not answer reads or acknowledge
// writes right now, or nil while it holds its lease: its ZooKeeper session
// was confirmed recently enough that the session cannot have expired, so
// no successor can have been chosen. It reads the monotonic clock at each
// call, so a process resumed after a pause sees an expired lease at once,
// before any goroutine of its own noticed anything.
func (p *primary) leaseErr() error {
	l := p.n.cfg.Cluster.Conn().Lease()
	if l.Session != p.session {
		return fmt.Errorf("%w: node %s no longer has the ZooKeeper session it leads group %s in", wire.ErrNotPrimary, p.n.id, p.n.cfg.Group)
	}
	if age := time.Since(l.Sent); age >= time.Duration(float64(l.Timeout)*leaseShare) {
		return fmt.Errorf("%w: node %s cannot tell whether it still leads group %s: ZooKeeper last confirmed its session %s ago (session timeout %s)",
			wire.ErrNotPrimary, p.n.id, p.n.cfg.Group, age.Round(time.Millisecond), l.Timeout)
	}
	return nil
}

// outcome tells a writer of entries up to seq whether they are committed
// (durable on every in-sync replica), whether they can no longer be (the
// role ended, or too few replicas are in sync; either way the write may or
// may not be kept), or else the channel to wait on before asking again.
// Without the lease even a committed write is refused: the client's retry
// carries the write's tag, and whichever node leads next finds the entry in
// its log and answers it from there (docs/replication.md, "Idempotent
// writes"), so the refusal never makes a write apply twice.
func (p *primary) outcome(seq uint64) (done bool, advanced <-chan struct{}, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.committed >= seq:
		if err := p.leaseErr(); err != nil {
			return false, nil, fmt.Errorf("%w; the write may or may not be kept", err)
		}
		return true, nil, nil
	case p.ctx.Err() != nil:
		return false, nil, fmt.Errorf("%w: %w before the write reached the in-sync replicas", wire.ErrUnavailable, errDeposed)
	case p.n.cfg.Acks != AcksOne && len(p.isr) < p.n.cfg.MinInsync:
		return false, nil, fmt.Errorf("%w: %d in-sync replica(s) of group %s, --min-insync is %d; the write may or may not be kept",
			wire.ErrUnavailable, len(p.isr), p.n.cfg.Group, p.n.cfg.MinInsync)
	}
	return false, p.advanced, nil
}

// attach registers a follower's new stream, which reports what it ships in
// sent, and returns its generation. The member's previous stream, if still
// open, is closed with the close it gave. vouched is how much of its log a
// member can hold without this stream: what this role shipped it before,
// or the log taken over, which it may have from earlier primaries. The
// follower's own word (Hello) counts only up to there.
func (p *primary) attach(id string, close func(), sent *atomic.Uint64) (stream int, vouched uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.members[id]
	if f == nil {
		f = &member{id: id}
		p.members[id] = f
	}
	if f.connected {
		f.closeOld()
		f.shipped = max(f.shipped, f.sent.Load())
	}
	f.connected = true
	f.stream++
	f.closeOld, f.sent = close, sent
	return f.stream, max(p.takeover, f.shipped)
}

func (p *primary) detach(id string, stream int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.members[id]; f != nil && f.stream == stream {
		f.shipped = max(f.shipped, f.sent.Load())
		f.connected, f.closeOld, f.sent = false, nil, nil
	}
}

// acked records that member id holds the log up to seq durably, as its
// stream of generation stream says; a replaced stream no longer counts.
func (p *primary) acked(id string, stream int, seq uint64) {
	p.mu.Lock()
	if f := p.members[id]; f != nil && f.stream == stream && seq > f.acked {
		f.acked = seq
	}
	p.mu.Unlock()
	p.recompute()
}

// maintainISR drops members that lag or left from the in-sync set, and
// adds back those that caught up, always through a compare-and-set that
// checks this node still leads this epoch (docs/replication.md, "When a write is acknowledged" and "Fencing").
func (p *primary) maintainISR() {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		last := p.n.store().LastSeq()
		var drop, add []string
		p.mu.Lock()
		for _, f := range p.members {
			f.samples = append(f.samples, logSample{seq: last, at: now})
			for len(f.samples) > 0 && f.acked >= f.samples[0].seq {
				f.caughtUpAt = f.samples[0].at
				f.samples = f.samples[1:]
			}
			if len(f.samples) > 1000 {
				f.samples = f.samples[len(f.samples)-1000:]
			}
			// A member that has not connected yet in this epoch has MaxLag
			// from the takeover to do so.
			lagging := (f.stream > 0 && !f.connected) || now.Sub(f.caughtUpAt) > p.n.cfg.MaxLag
			inISR := slices.Contains(p.isr, f.id)
			switch {
			case inISR && lagging:
				drop = append(drop, f.id)
			case !inISR && !lagging && f.connected && f.acked >= p.committed:
				f.joining = true
				add = append(add, f.id)
			}
		}
		p.mu.Unlock()
		if len(drop) > 0 || len(add) > 0 {
			p.changeISR(drop, add)
		}
	}
}

func (p *primary) changeISR(drop, add []string) {
	defer func() {
		p.mu.Lock()
		for _, id := range add {
			if f := p.members[id]; f != nil {
				f.joining = false
			}
		}
		p.mu.Unlock()
	}()
	g, err := p.n.cfg.Cluster.UpdateGroup(p.ctx, p.n.cfg.Group, func(g *coord.Group) error {
		if g.Epoch != p.epoch || g.Primary != p.n.id {
			return errDeposed
		}
		isr := slices.DeleteFunc(slices.Clone(g.ISR), func(id string) bool { return slices.Contains(drop, id) })
		for _, id := range add {
			if !slices.Contains(isr, id) && slices.Contains(g.Members, id) {
				isr = append(isr, id)
			}
		}
		g.ISR = isr
		return nil
	})
	if err != nil {
		if errors.Is(err, errDeposed) {
			p.n.log.Warn("in-sync set change refused: the group has a newer epoch or primary", "epoch", p.epoch)
			p.cancel(errDeposed)
		} else if p.ctx.Err() == nil {
			p.n.log.Warn("in-sync set change failed", "drop", drop, "add", add, "err", err)
		}
		return
	}
	p.mu.Lock()
	p.isr = slices.Clone(g.ISR)
	// Writers waiting for the watermark learn of a set now too small.
	p.signalLocked()
	p.mu.Unlock()
	p.n.metrics.isrShrinks.Add(float64(len(drop)))
	p.n.metrics.isrExpands.Add(float64(len(add)))
	p.n.log.Info("in-sync replicas changed", "isr", g.ISR, "dropped", drop, "added", add, "epoch", p.epoch)
	p.recompute()
}

// followerStatus reports the primary's view of each member for `admin status`.
func (p *primary) followerStatus() (isr []string, out []*wire.FollowerStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.members {
		out = append(out, &wire.FollowerStatus{Id: f.id, AckedSeq: f.acked, Connected: f.connected, InSync: slices.Contains(p.isr, f.id)})
	}
	slices.SortFunc(out, func(a, b *wire.FollowerStatus) int { return strings.Compare(a.Id, b.Id) })
	return slices.Clone(p.isr), out
}

// startPoint decides where a follower's log continues from the primary's:
// the first sequence number to send, and whether the follower must first
// drop its entries after next-1. It walks the follower's epochs from the
// newest, asking where each ends in this log (Kafka KIP-101/279). snapshot
// is true when the follower cannot continue by log alone.
func startPoint(store *datastore.Store, hello *wire.Hello) (next uint64, truncate, snapshot bool) {
	if hello.LastSeq == 0 {
		return 1, false, false
	}
	keep := hello.LastSeq
	for i := len(hello.Epochs) - 1; i >= 0; i-- {
		found, end, ok := store.EpochEnd(hello.Epochs[i].Epoch)
		if !ok {
			keep = 0
			break
		}
		keep = min(keep, end-1)
		if found == hello.Epochs[i].Epoch {
			break
		}
		// This log lacks the follower's epoch: all of it diverges.
		keep = min(keep, hello.Epochs[i].StartSeq-1)
	}
	if keep < hello.CommittedSeq {
		return 0, false, true
	}
	return keep + 1, keep < hello.LastSeq, false
}

// handover moves the primary role to member to (or the most caught-up
// in-sync member): stop admitting writes, wait until the target holds the
// whole log, then switch in one compare-and-set that bumps the epoch. Writes
// admitted before the drain either reach the target and are acknowledged,
// or fail with the role's end and are never acknowledged.
//
// A leaving primary (shutting down) also takes itself out of the in-sync
// set in the same compare-and-set, so its successor does not wait for it.
func (p *primary) handover(ctx context.Context, to string, leaving bool) (*wire.HandoverReply, error) {
	start := time.Now()
	// Only a registered member can lead: the coordinator fails over at once
	// from a primary whose registration is gone (one whose session was just
	// replaced registers again a moment later).
	nodes, err := p.n.cfg.Cluster.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the registered nodes: %w", err)
	}
	registered := func(id string) bool {
		return slices.ContainsFunc(nodes, func(n coord.NodeInfo) bool { return n.ID == id })
	}
	p.mu.Lock()
	if to == "" {
		var best *member
		for _, f := range p.members {
			if f.connected && registered(f.id) && slices.Contains(p.isr, f.id) && (best == nil || f.acked > best.acked) {
				best = f
			}
		}
		if best != nil {
			to = best.id
		}
	}
	target := p.members[to]
	switch {
	case to == "":
		p.mu.Unlock()
		return nil, fmt.Errorf("group %s has no connected in-sync member to hand over to", p.n.cfg.Group)
	case target == nil || !target.connected:
		p.mu.Unlock()
		return nil, fmt.Errorf("member %s is not connected to the primary", to)
	case !registered(to):
		p.mu.Unlock()
		return nil, fmt.Errorf("member %s is not registered in ZooKeeper (its session is being replaced); try again in a moment", to)
	case !slices.Contains(p.isr, to):
		p.mu.Unlock()
		return nil, fmt.Errorf("member %s is not in sync (ISR %v); catch it up first or use --force", to, p.isr)
	}
	p.draining.Store(true)
	p.mu.Unlock()
	fail := func(err error) (*wire.HandoverReply, error) {
		p.draining.Store(false)
		return nil, err
	}
	// The wait ends with the role too: a primary that lost its session
	// has nothing left to hand over.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()
	for p.ackedOf(to) < p.n.store().LastSeq() {
		if err := clock.Sleep(wctx, time.Millisecond); err != nil {
			return fail(fmt.Errorf("member %s did not catch up (at %d of %d): %w", to, p.ackedOf(to), p.n.store().LastSeq(), err))
		}
	}
	g, err := p.n.cfg.Cluster.UpdateGroup(ctx, p.n.cfg.Group, func(g *coord.Group) error {
		if g.Epoch != p.epoch || g.Primary != p.n.id {
			return errDeposed
		}
		passRole(g, p.n.id, to, leaving)
		return nil
	})
	if err != nil {
		return fail(fmt.Errorf("switch primary: %w", err))
	}
	p.cancel(errDeposed)
	paused := time.Since(start)
	p.n.log.Info("handed over the primary role", "to", to, "epoch", g.Epoch, "paused", paused.Round(time.Microsecond))
	return &wire.HandoverReply{NewPrimary: to, Epoch: g.Epoch, PausedMicros: paused.Microseconds()}, nil
}
