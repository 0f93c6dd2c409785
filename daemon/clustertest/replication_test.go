package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/clustertest"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// group starts a coordinator and a group g1 of n data nodes and waits until
// all are in sync and every slot is served.
func group(t *testing.T, n int, opts clustertest.Options) *clustertest.Cluster {
	t.Helper()
	c := clustertest.New(t, opts)
	c.StartCoordinator("c1")
	c.StartNode("n1", "g1")
	c.WaitGroup("g1", func(g *coord.Group) bool { return g.Primary != "" })
	for i := 2; i <= n; i++ {
		c.StartNode(fmt.Sprintf("n%d", i), "g1")
	}
	c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == n })
	c.WaitServing()
	return c
}

func put(t *testing.T, cli *client.Client, keys ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, k := range keys {
		if err := cli.Put(ctx, []byte(k), []byte("v-"+k)); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
}

func mustGet(t *testing.T, cli *client.Client, keys ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, k := range keys {
		if v, err := cli.Get(ctx, []byte(k)); err != nil || string(v) != "v-"+k {
			t.Fatalf("get %s = %q, %v; want %q", k, v, err, "v-"+k)
		}
	}
}

func keys(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func inISR(c *clustertest.Cluster, names ...string) func(*coord.Group) bool {
	return func(g *coord.Group) bool {
		ids := make([]string, len(names))
		for i, n := range names {
			ids[i] = c.Node(n).ID()
		}
		return len(g.ISR) == len(ids) && !slices.ContainsFunc(ids, func(id string) bool { return !slices.Contains(g.ISR, id) })
	}
}

// A follower cut off from the primary leaves the in-sync set after MaxLag,
// writes go on without it, and once the link is back it catches up and
// returns to the set.
func TestISRShrinksAndGrows(t *testing.T) {
	c := group(t, 3, clustertest.Options{MaxLag: 500 * time.Millisecond})
	cli := c.Client()
	put(t, cli, keys("before", 20)...)
	p := c.Primary("g1")
	var lagging string
	for _, n := range []string{"n1", "n2", "n3"} {
		if n != p {
			lagging = n
			break
		}
	}
	var others []string
	for _, n := range []string{"n1", "n2", "n3"} {
		if n != lagging {
			others = append(others, n)
		}
	}
	c.Partition(p, lagging)
	// An idle follower is not behind: the writes make it lag, and wait
	// until the primary drops it.
	put(t, cli, keys("during", 20)...)
	c.WaitGroup("g1", inISR(c, others...))
	c.Heal(p, lagging)
	g := c.WaitGroup("g1", inISR(c, "n1", "n2", "n3"))
	if c.NameOf(g.Primary) != p {
		t.Fatalf("primary moved from %s to %s", p, g.Primary)
	}
	// The returned member has everything: make it primary and read.
	handover(t, c, p, lagging)
	mustGet(t, cli, append(keys("before", 20), keys("during", 20)...)...)
}

func handover(t *testing.T, c *clustertest.Cluster, from, to string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g, _, err := c.Coord().Group(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	reply, err := nodeclient.Nodes{}.Handover(ctx, c.Node(from).Addr(), g.Epoch, c.Node(to).ID())
	if err != nil {
		t.Fatalf("handover %s → %s: %v", from, to, err)
	}
	if reply.Epoch != g.Epoch+1 || reply.NewPrimary != c.Node(to).ID() {
		t.Fatalf("handover reply %+v; want %s at epoch %d", reply, c.Node(to).ID(), g.Epoch+1)
	}
	c.WaitGroup("g1", func(g *coord.Group) bool { return g.Primary == c.Node(to).ID() })
}

// With --min-insync 2 a primary whose only follower is gone refuses writes
// instead of acknowledging them alone, and takes them again once it is back.
func TestMinInsyncRefusesWrites(t *testing.T) {
	c := group(t, 2, clustertest.Options{MaxLag: 300 * time.Millisecond, MinInsync: 2})
	cli := c.Client()
	put(t, cli, "first")
	p := c.Primary("g1")
	f := map[string]string{"n1": "n2", "n2": "n1"}[p]
	c.Kill(f)
	c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err := cli.Put(ctx, []byte("refused"), []byte("x"))
	cancel()
	if !errors.Is(err, client.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put with one in-sync replica of two required: %v; want unavailable", err)
	}
	if err == nil {
		t.Fatal("put acknowledged with fewer in-sync replicas than --min-insync")
	}
	c.Restart(f)
	c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 2 })
	put(t, cli, "after")
	mustGet(t, cli, "first", "after")
}

// A graceful switchover moves the primary role to a member that holds the
// whole log, bumping the epoch, and loses no acknowledged write.
func TestSwitchover(t *testing.T) {
	c := group(t, 3, clustertest.Options{})
	cli := c.Client()
	put(t, cli, keys("a", 50)...)
	p := c.Primary("g1")
	to := map[string]string{"n1": "n2", "n2": "n3", "n3": "n1"}[p]
	before := c.WaitGroup("g1", func(*coord.Group) bool { return true })
	handover(t, c, p, to)
	after := c.WaitGroup("g1", inISR(c, "n1", "n2", "n3"))
	if after.Epoch != before.Epoch+1 {
		t.Fatalf("epoch %d after switchover from %d", after.Epoch, before.Epoch)
	}
	put(t, cli, keys("b", 50)...)
	mustGet(t, cli, append(keys("a", 50), keys("b", 50)...)...)
}

// A primary stopped gracefully hands its role over before it leaves, in
// one compare-and-set that also takes it out of the in-sync set. With no
// coordinator running, nothing else could move the role.
func TestStoppedPrimaryHandsOver(t *testing.T) {
	c := group(t, 3, clustertest.Options{})
	cli := c.Client()
	put(t, cli, keys("a", 50)...)
	p := c.Primary("g1")
	id := c.Node(p).ID()
	before := c.WaitGroup("g1", func(*coord.Group) bool { return true })
	c.Kill("c1")
	c.Stop(p)
	after := c.WaitGroup("g1", func(g *coord.Group) bool { return g.Primary != id })
	if after.Epoch != before.Epoch+1 || slices.Contains(after.ISR, id) {
		t.Fatalf("after stopping the primary %+v; want a successor at epoch %d and %s out of the ISR", after, before.Epoch+1, id)
	}
	put(t, cli, keys("b", 50)...)
	mustGet(t, cli, append(keys("a", 50), keys("b", 50)...)...)
}
