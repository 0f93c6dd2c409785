package admin

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/memcoord"
	"github.com/thunderyurts/thunderyurts/wire"
)

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newTestCluster builds a live in-memory cluster "default" with 8 slots:
// group g1 (primary n1, secondary n2, both registered) owning slots 0-5,
// slots 6-7 unassigned, and two coordinators. Its registrations end with the
// test.
func newTestCluster(t testing.TB) *coord.Cluster {
	t.Helper()
	ctx := testContext(t)
	srv := memcoord.New()
	conn := srv.Connect()
	t.Cleanup(func() { conn.Close() })
	cl := coord.NewCluster(conn, "default")
	if _, err := cl.CreateIfMissing(ctx, coord.ClusterMeta{Slots: 8, ReplicationFactor: 2}); err != nil {
		t.Fatal(err)
	}
	if err := cl.EnsureGroup(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.UpdateGroup(ctx, "g1", func(g *coord.Group) error {
		g.Epoch, g.Primary = 2, "n1"
		g.Members, g.ISR = []string{"n1", "n2"}, []string{"n1", "n2"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.UpdateSlotTable(ctx, func(st *coord.SlotTable) error {
		for i := range 6 {
			st.Owners[i] = "g1"
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []coord.NodeInfo{{ID: "n1", Group: "g1", Addr: "n1:1"}, {ID: "n2", Group: "g1", Addr: "n2:1"}} {
		if err := cl.RegisterNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []coord.CoordinatorInfo{{ID: "c1", Addr: "c1:1"}, {ID: "c2", Addr: "c2:1"}} {
		// Each coordinator campaigns on its own session, as real ones do.
		cconn := srv.Connect()
		t.Cleanup(func() { cconn.Close() })
		if _, err := coord.NewCluster(cconn, "default").CampaignCoordinator(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	return cl
}

func TestCollectStatus(t *testing.T) {
	ctx := testContext(t)
	cl := newTestCluster(t)
	probe := func(ctx context.Context, addr string) (*wire.NodeStatus, error) {
		switch addr {
		case "n1:1":
			return &wire.NodeStatus{Id: "n1", Keys: 7, LastSeq: 50, Epoch: 2}, nil
		case "n2:1":
			<-ctx.Done() // a hung node: its bound must end the call
			return nil, ctx.Err()
		}
		return nil, errors.New("unexpected address " + addr)
	}
	s, err := CollectStatus(ctx, cl, probe, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Cluster != "default" || s.Slots != 8 || s.ReplicationFactor != 2 || s.TableVersion != 2 {
		t.Errorf("header = %+v", s)
	}
	if len(s.Coordinators) != 2 || s.Coordinators[0].ID != "c1" || s.Coordinators[0].Role != "leader" || s.Coordinators[1].Role != "standby" {
		t.Errorf("coordinators = %+v", s.Coordinators)
	}
	if len(s.Groups) != 1 || s.Groups[0].Slots != 6 || s.Groups[0].Keys == nil || *s.Groups[0].Keys != 7 {
		t.Errorf("groups = %s", dump(s.Groups))
	}
	if len(s.Nodes) != 2 || s.Nodes[0].State != "up" || s.Nodes[1].State != NodeUnreachable || s.Nodes[1].Error == "" || s.State != StateUnhealthy {
		t.Errorf("nodes = %s", dump(s.Nodes))
	}
	var buf bytes.Buffer
	if err := PrintStatus(&buf, s, FormatTable); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"- 2 slots unassigned: 6-7", "- node n2 (n2:1) unreachable: context deadline exceeded"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, buf.String())
		}
	}

	// Without a probe, the ZooKeeper view alone.
	s, err = CollectStatus(ctx, cl, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range s.Nodes {
		if n.State != "registered" {
			t.Errorf("node %s state %q without a probe, want registered", n.ID, n.State)
		}
	}
}

func TestCollectStatusNoCluster(t *testing.T) {
	conn := memcoord.New().Connect()
	t.Cleanup(func() { conn.Close() })
	_, err := CollectStatus(testContext(t), coord.NewCluster(conn, "nope"), nil, nil)
	if !errors.Is(err, coord.ErrNoNode) {
		t.Errorf("err = %v, want ErrNoNode", err)
	}
}
