package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// TestFakeFollowerCannotAcknowledgeUnsentEntries points a fake follower at
// a real primary: a process that is no data node opens Replicate under the
// id of a member that was killed, and acknowledges entries it was never
// sent. The primary ends its stream; the acknowledgement counts for
// nothing: the member does not rejoin the in-sync set, the watermark does
// not move, and with --min-insync 2 writes stay refused.
func TestFakeFollowerCannotAcknowledgeUnsentEntries(t *testing.T) {
	tc := newTestCluster(t)
	tc.coordinator("coord-1")
	for _, name := range []string{"data-1", "data-2"} {
		tc.dataNode(name, "g1", "--max-lag", "1s", "--min-insync", "2")
	}
	cl := tc.coordCluster()
	tc.waitServing(cl, 30*time.Second)
	g := tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 2 })
	primary := tc.procOf(g.Primary)
	victim := g.ISR[slices.IndexFunc(g.ISR, func(id string) bool { return id != g.Primary })]
	tc.procOf(victim).Kill()
	g = tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return !slices.Contains(g.ISR, victim) })
	put := &wire.Request{Op: wire.Op_PUT, Key: []byte("k"), Value: []byte("v")}
	if r := rawCall(t, primary.addr, put)[0]; r.Code != wire.Code_UNAVAILABLE {
		t.Fatalf("put with one in-sync replica and --min-insync 2: %v %s", r.Code, r.Message)
	}
	committed := committedSeq(t, primary.addr)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rpc, err := dataClient(t, primary.addr).Replicate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &wire.Hello{Group: "g1", NodeId: victim, Epoch: g.Epoch}
	if err := rpc.Send(&wire.FollowerMessage{Body: &wire.FollowerMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	if err := rpc.Send(&wire.FollowerMessage{Body: &wire.FollowerMessage_Ack{Ack: &wire.Ack{DurableSeq: 1 << 62}}}); err != nil {
		t.Fatal(err)
	}
	var ended error
	for ended == nil {
		_, ended = rpc.Recv()
	}
	if ctx.Err() != nil {
		t.Fatal("the primary kept the fake follower's stream open")
	}
	if !errors.Is(wire.FromRPC(ended), wire.ErrInvalidArgument) || !strings.Contains(ended.Error(), "protocol error") {
		t.Fatalf("the primary ended the fake stream with %v, want a protocol error", ended)
	}

	// Give the primary's in-sync upkeep (every 100 ms) time to act on the
	// bogus acknowledgement, were it counted.
	time.Sleep(2 * time.Second)
	if g := tc.waitGroup(cl, "g1", time.Second, func(*coord.Group) bool { return true }); slices.Contains(g.ISR, victim) {
		t.Fatalf("the fake follower joined the in-sync set: %v", g.ISR)
	}
	if r := rawCall(t, primary.addr, put)[0]; r.Code == wire.Code_OK {
		t.Fatal("a put was acknowledged with only the primary holding it")
	}
	if got := committedSeq(t, primary.addr); got != committed {
		t.Fatalf("the watermark moved from %d to %d with no real follower", committed, got)
	}
}

// committedSeq asks the node at addr for its committed sequence number.
func committedSeq(t *testing.T, addr string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := dataClient(t, addr).Status(ctx, &wire.NodeStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st.CommittedSeq
}
