package datanode

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"storj.io/drpc/drpcconn"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/internal/poll"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// fakeFollower opens Replicate to addr directly, as a process that is not a
// real data node would.
type fakeFollower struct {
	rpc    wire.DRPCData_ReplicateClient
	closed chan error // Recv's error once the primary ends the stream
}

func openFake(t *testing.T, addr string, hello *wire.Hello) *fakeFollower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn := drpcconn.New(raw)
	t.Cleanup(func() { conn.Close() })
	rpc, err := wire.NewDRPCDataClient(conn).Replicate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rpc.Send(&wire.FollowerMessage{Body: &wire.FollowerMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	f := &fakeFollower{rpc: rpc, closed: make(chan error, 1)}
	go func() {
		for {
			if _, err := rpc.Recv(); err != nil {
				f.closed <- err
				return
			}
		}
	}()
	return f
}

func (f *fakeFollower) ended(t *testing.T, what string) error {
	t.Helper()
	select {
	case err := <-f.closed:
		return err
	case <-time.After(patience):
		t.Fatalf("%s: the primary kept the stream open", what)
		return nil
	}
}

// Nobody but a member may feed the watermark: a stream under a stranger's
// id is refused; a member's newer stream closes its older one; a stream
// that acknowledges entries it was never sent is dropped, and the
// acknowledgement counts for nothing — the member does not rejoin the
// in-sync set and writes stay refused.
func TestReplicateTrustsOnlyWhatItSent(t *testing.T) {
	c := newTestCluster(t)
	a := c.startNode(nodeDir(t, "a"), nil, func(cfg *Config) { cfg.MinInsync = 2 })
	c.waitGroup("a leads", func(g *coord.Group) bool { return g.Primary == a.ID() })
	b := c.startNode(nodeDir(t, "b"), nil, nil)
	c.waitServing(a, b)
	epoch := c.group().Epoch

	stranger := openFake(t, a.Addr(), &wire.Hello{Group: "g1", NodeId: "n-stranger", Epoch: epoch})
	if err := stranger.ended(t, "stranger"); !strings.Contains(err.Error(), "not a member") || !errors.Is(wire.FromRPC(err), wire.ErrInvalidArgument) {
		t.Fatalf("stranger's stream ended with %v", err)
	}

	// b goes away; with --min-insync 2 the group refuses writes.
	b.Close()
	c.waitGroup("b out of the ISR", func(g *coord.Group) bool { return !slices.Contains(g.ISR, b.ID()) })
	if r := call(t, a.Addr(), patience, put("k", "v"))[0]; r.Code != wire.Code_UNAVAILABLE {
		t.Fatalf("put with one in-sync replica: %v %s", r.Code, r.Message)
	}
	committed := a.store().CommittedSeq()

	first := openFake(t, a.Addr(), &wire.Hello{Group: "g1", NodeId: b.ID(), Epoch: epoch})
	// The two streams arrive on two connections: the second is opened only
	// once the first is attached, so which one is older is certain.
	eventually(t, "first stream attached", func() bool {
		p := a.state.Load().primary
		if p == nil {
			return false
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		m := p.members[b.ID()]
		return m != nil && m.connected
	})
	second := openFake(t, a.Addr(), &wire.Hello{Group: "g1", NodeId: b.ID(), Epoch: epoch})
	if err := first.ended(t, "older stream of the same member"); err == nil {
		t.Fatal("older stream ended without an error")
	}
	if err := second.rpc.Send(&wire.FollowerMessage{Body: &wire.FollowerMessage_Ack{Ack: &wire.Ack{DurableSeq: 1 << 62}}}); err != nil {
		t.Fatal(err)
	}
	second.ended(t, "stream acknowledging unsent entries")

	if p := a.state.Load().primary; p == nil || p.ackedOf(b.ID()) > a.store().LastSeq() {
		t.Fatalf("the bogus acknowledgement counted: acked %d, log ends at %d", p.ackedOf(b.ID()), a.store().LastSeq())
	}
	// Give the primary's ISR upkeep (every 100 ms) time to act on a bogus ack.
	time.Sleep(time.Second)
	if g := c.group(); slices.Contains(g.ISR, b.ID()) {
		t.Fatalf("the fake follower joined the in-sync set: %v", g.ISR)
	}
	if r := call(t, a.Addr(), patience, put("k", "v"))[0]; r.Code == wire.Code_OK {
		t.Fatal("a put was acknowledged with only the primary holding it")
	}
	if got := a.store().CommittedSeq(); got != committed {
		t.Fatalf("watermark moved from %d to %d with no real follower", committed, got)
	}
}

// Handover names the epoch it was meant for; any other is refused.
func TestHandoverNeedsTheEpoch(t *testing.T) {
	c, a, b := startPair(t)
	epoch := c.group().Epoch
	s := &service{n: a}
	ctx := context.Background()
	for _, e := range []uint64{0, epoch - 1, epoch + 1} {
		if _, err := s.Handover(ctx, &wire.HandoverRequest{Epoch: e, To: b.ID()}); !errors.Is(wire.FromRPC(err), wire.ErrStaleEpoch) {
			t.Fatalf("handover for epoch %d at epoch %d: %v", e, epoch, err)
		}
	}
	// Over the wire, the caller sees the same typed refusal.
	if _, err := (nodeclient.Nodes{}).Handover(ctx, a.Addr(), epoch+1, b.ID()); !errors.Is(err, wire.ErrStaleEpoch) {
		t.Fatalf("handover over dRPC for epoch %d: %v", epoch+1, err)
	}
	if c.group().Primary != a.ID() {
		t.Fatal("primary changed")
	}
	reply, err := s.Handover(ctx, &wire.HandoverRequest{Epoch: epoch, To: b.ID()})
	if err != nil || reply.NewPrimary != b.ID() {
		t.Fatalf("handover at the current epoch: %v, %v", reply, err)
	}
}

// A PING is answered OK before routing: the primary and a secondary both
// answer it.
func TestPingAnsweredByEveryRole(t *testing.T) {
	_, a, b := startPair(t)
	for _, n := range []*Node{a, b} {
		if r := call(t, n.Addr(), patience, &wire.Request{Op: wire.Op_PING})[0]; r.Code != wire.Code_OK {
			t.Fatalf("ping to %s: %v %q", n.ID(), r.Code, r.Message)
		}
	}
}

// A handover never goes to a member whose registration is gone (its session
// is being replaced): the coordinator would fail the group over again at
// once.
func TestHandoverNeedsARegisteredTarget(t *testing.T) {
	c := newTestCluster(t)
	a := c.startNode(nodeDir(t, "a"), nil, nil)
	c.waitGroup("a leads", func(g *coord.Group) bool { return g.Primary == a.ID() })
	bConn := c.srv.Connect()
	b := c.startNode(nodeDir(t, "b"), bConn, nil)
	c.waitServing(a, b)
	epoch := c.group().Epoch
	ctx := context.Background()
	// b's session ends, so its znode goes and nothing registers it again,
	// while its replication stream to a stays up for a moment.
	bConn.Close()
	poll.Until(t, patience, "b unregistered", func() bool {
		nodes, err := c.view.Nodes(ctx)
		return err == nil && !slices.ContainsFunc(nodes, func(n coord.NodeInfo) bool { return n.ID == b.ID() })
	})
	s := &service{n: a}
	if _, err := s.Handover(ctx, &wire.HandoverRequest{Epoch: epoch, To: b.ID()}); err == nil ||
		!(strings.Contains(err.Error(), "not registered") || strings.Contains(err.Error(), "not connected")) {
		t.Fatalf("handover to an unregistered member: %v", err)
	}
	if _, err := s.Handover(ctx, &wire.HandoverRequest{Epoch: epoch}); err == nil {
		t.Fatal("handover to any member chose an unregistered one")
	}
	if g := c.group(); g.Primary != a.ID() || g.Epoch != epoch {
		t.Fatalf("group changed: %+v", g)
	}
}

// startPair starts a group of two serving nodes: a leads, b follows.
func startPair(t *testing.T) (c *testCluster, a, b *Node) {
	t.Helper()
	c = newTestCluster(t)
	a = c.startNode(nodeDir(t, "a"), nil, nil)
	c.waitGroup("a leads", func(g *coord.Group) bool { return g.Primary == a.ID() })
	b = c.startNode(nodeDir(t, "b"), nil, nil)
	c.waitServing(a, b)
	return c, a, b
}

// /readyz: the primary and an in-sync secondary are ready; a secondary out
// of the in-sync set is not.
func TestReadyWhileServingItsRole(t *testing.T) {
	c, a, b := startPair(t)
	c.waitGroup("b in sync", func(g *coord.Group) bool { return slices.Contains(g.ISR, b.ID()) })
	poll.Until(t, patience, "both ready", func() bool { return a.readyErr() == nil && b.readyErr() == nil })
	b.update(func(s *state) {
		g := *s.group
		g.ISR = slices.DeleteFunc(slices.Clone(g.ISR), func(id string) bool { return id == b.ID() })
		s.group = &g
	})
	if err := b.readyErr(); err == nil || !strings.Contains(err.Error(), "not in sync") {
		t.Fatalf("secondary out of the ISR: ready (%v)", err)
	}
}

// Drops and marks ship to a secondary like any log entry: after the
// primary drops a key's slot and writes a mark, the secondary has the key
// gone and the mark set.
func TestReplicateDropAndMark(t *testing.T) {
	c, a, b := startPair(t)
	c.waitGroup("b in sync", func(g *coord.Group) bool { return slices.Contains(g.ISR, b.ID()) })
	if r := call(t, a.Addr(), patience, put("dropped", "v"))[0]; r.Code != wire.Code_OK {
		t.Fatalf("put: %v %q", r.Code, r.Message)
	}
	slot := coord.SlotOf([]byte("dropped"), a.store().Slots())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("primary: last %d committed %d; secondary: last %d committed %d",
				a.store().LastSeq(), a.store().CommittedSeq(), b.store().LastSeq(), b.store().CommittedSeq())
		}
	})
	eventually(t, "the secondary has the put", func() bool {
		v, err := b.store().Get(slot, []byte("dropped"))
		return err == nil && string(v) == "v"
	})
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	// Through the primary's commit path: a write beside it would not move
	// the watermark if the secondary acknowledged before the primary synced.
	p := a.state.Load().primary
	if _, err := p.commitWrite(ctx, []datastore.Mutation{{Slot: slot, Drop: true}}); err != nil {
		t.Fatal(err)
	}
	seq, err := p.commitWrite(ctx, []datastore.Mutation{{Mark: true, Key: []byte("migration/m1"), Value: []byte("42")}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the secondary commits the drop and the mark", func() bool { return b.store().CommittedSeq() >= seq })
	if v, err := b.store().Get(slot, []byte("dropped")); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("secondary's key after the drop: %q, %v", v, err)
	}
	if v, err := b.store().Mark(ctx, "migration/m1"); err != nil || string(v) != "42" {
		t.Fatalf("secondary's mark: %q, %v", v, err)
	}
}
