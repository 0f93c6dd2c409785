package clustertest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/clustertest"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// others returns the members of names other than skip.
func others(skip string, names ...string) []string {
	var out []string
	for _, n := range names {
		if n != skip {
			out = append(out, n)
		}
	}
	return out
}

// A primary cut off from its followers writes entries to its own log that
// nobody acknowledges, and dies. When it comes back it follows the new
// primary, whose log went on in a newer epoch: it must drop those entries
// (truncation by epoch), not keep them or serve them.
func TestDivergedFollowerIsTruncated(t *testing.T) {
	// A long MaxLag keeps the followers in the old primary's ISR, so it
	// cannot commit the entries alone.
	c := group(t, 3, clustertest.Options{MaxLag: time.Minute})
	cli := c.Client()
	put(t, cli, keys("before", 20)...)
	old := c.Primary("g1")
	followers := others(old, "n1", "n2", "n3")
	for _, f := range followers {
		c.Partition(old, f)
	}
	oldNode := c.Node(old)
	status := func() *wire.NodeStatus {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := nodeclient.Nodes{}.NodeStatus(ctx, oldNode.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	start := status().LastSeq
	var wg sync.WaitGroup
	for _, k := range keys("lost", 10) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			if err := cli.Put(ctx, []byte(k), []byte("v-"+k)); err == nil {
				t.Errorf("put %s acknowledged by a primary cut off from every in-sync follower", k)
			}
		}()
	}
	wg.Wait()
	if st := status(); st.LastSeq <= start {
		t.Fatalf("the cut-off primary logged nothing (last seq %d); the test needs diverged entries", st.LastSeq)
	}
	c.Kill(old)
	g := c.WaitGroup("g1", func(g *coord.Group) bool { return g.Primary != "" && g.Primary != oldNode.ID() })
	put(t, cli, keys("after", 20)...)
	for _, f := range followers {
		c.Heal(old, f)
	}
	c.Restart(old)
	c.WaitGroup("g1", func(cur *coord.Group) bool { return len(cur.ISR) == 3 })
	// Served by the old primary again, the group has the acknowledged
	// writes of both epochs and none of the diverged ones.
	handover(t, c, c.NameOf(g.Primary), old)
	mustGet(t, cli, append(keys("before", 20), keys("after", 20)...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range keys("lost", 10) {
		if v, err := cli.Get(ctx, []byte(k)); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("get %s = %q, %v: a diverged, never acknowledged write survived", k, v, err)
		}
	}
}

// A primary whose session is in doubt stops serving at once, before the
// coordinator can choose a successor; deposed, it follows the new primary.
func TestPrimaryFencedBySession(t *testing.T) {
	c := group(t, 3, clustertest.Options{})
	cli := c.Client()
	put(t, cli, keys("before", 10)...)
	old := c.Primary("g1")
	c.Disconnect(old)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err := cli.Put(ctx, []byte("while-in-doubt"), []byte("x"))
	cancel()
	if err == nil {
		t.Fatal("a primary whose session is in doubt acknowledged a write")
	}
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err = cli.Get(ctx, []byte("before-0"))
	cancel()
	if err == nil {
		t.Fatal("a primary whose session is in doubt answered a read")
	}
	oldID := c.Node(old).ID()
	c.ExpireSession(old)
	c.WaitGroup("g1", func(g *coord.Group) bool { return g.Primary != "" && g.Primary != oldID })
	c.Reconnect(old)
	put(t, cli, keys("after", 10)...)
	mustGet(t, cli, append(keys("before", 10), keys("after", 10)...)...)
	c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 3 })
}

// A primary refuses a follower that knows a newer epoch than its own: it
// has been deposed, and must not ship it anything.
func TestPrimaryRefusesFollowerOfNewerEpoch(t *testing.T) {
	c := group(t, 2, clustertest.Options{})
	put(t, c.Client(), keys("k", 5)...)
	p := c.Primary("g1")
	f := others(p, "n1", "n2")[0]
	g := c.WaitGroup("g1", func(*coord.Group) bool { return true })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := wire.Dial(ctx, c.Node(p).Addr(), wire.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rpc, err := wire.NewDRPCDataClient(conn).Replicate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &wire.Hello{Group: "g1", NodeId: c.Node(f).ID(), Epoch: g.Epoch + 1}
	if err := rpc.Send(&wire.FollowerMessage{Body: &wire.FollowerMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	if msg, err := rpc.Recv(); err == nil {
		t.Fatalf("primary of epoch %d shipped %v to a follower of epoch %d", g.Epoch, msg, g.Epoch+1)
	}
}
