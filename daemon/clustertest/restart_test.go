package clustertest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/clustertest"
	"github.com/thunderyurts/thunderyurts/daemon/datanode"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// A crashed node's registration outlives it with its session (here for
// good: a memcoord session never expires by itself). Restarted, the node
// holds its directory's lock, so it deletes that stale registration and
// serves at once; a crashed primary comes back only in a new epoch, with
// every acknowledged write. A second start on the same directory is
// refused.
func TestCrashedNodesRestartWithoutSessionExpiry(t *testing.T) {
	c := group(t, 3, clustertest.Options{})
	cli := c.Client()
	put(t, cli, keys("before", 20)...)
	for _, role := range []string{"primary", "secondary"} {
		before := c.WaitGroup("g1", func(g *coord.Group) bool { return len(g.ISR) == 3 })
		victim := c.NameOf(before.Primary)
		if role == "secondary" {
			victim = c.NameOf(before.ISR[0])
			if victim == c.NameOf(before.Primary) {
				victim = c.NameOf(before.ISR[1])
			}
		}
		id := c.Node(victim).ID()
		c.Crash(victim)
		c.Restart(victim)
		// A crashed primary may have lost entries it shipped but had not
		// synced: it serves again only in a new epoch.
		c.WaitGroup("g1", func(g *coord.Group) bool {
			return len(g.ISR) == 3 && g.Primary != "" && (role == "secondary" || g.Epoch > before.Epoch)
		})
		c.Eventually(victim+" serves again", func(ctx context.Context) bool {
			st, err := nodeclient.Nodes{}.NodeStatus(ctx, c.Node(victim).Addr())
			return err == nil && st.Role != "unknown"
		})
		put(t, cli, keys("after-"+role, 20)...)
		mustGet(t, cli, keys("before", 20)...)
		mustGet(t, cli, keys("after-"+role, 20)...)
		if c.Node(victim).ID() != id {
			t.Fatalf("%s came back as %s, not %s", victim, c.Node(victim).ID(), id)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := datanode.Start(ctx, datanode.Config{Cluster: c.Coord(), Group: "g1", Listen: "127.0.0.1:0", Dir: c.Dir("n1")})
	if err == nil {
		n.Close()
		t.Fatal("a second data node started on a directory in use")
	}
	if !errors.Is(err, datanode.ErrDirInUse) {
		t.Fatalf("second start on a directory in use: %v; want ErrDirInUse", err)
	}
}
