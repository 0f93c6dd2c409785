package coordinator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/memcoord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// The coordinator's tests run it over memcoord against fake data nodes:
// registrations made on sessions of their own, and log positions answered
// by the probe the test injects.

const waitFor = 20 * time.Second

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeCluster is a memcoord service with fake data nodes.
type fakeCluster struct {
	t        *testing.T
	srv      *memcoord.Server
	observer *coord.Cluster
	nodes    map[string]*memcoord.Conn // by node id
	coords   []*Coordinator

	mu        sync.Mutex
	positions map[string]*wire.NodeStatus // by node address

	// wrap, when set, wraps the sessions of the coordinators started next.
	wrap func(*memcoord.Conn) coord.Conn
}

func newFakeCluster(t *testing.T) *fakeCluster {
	srv := memcoord.New()
	f := &fakeCluster{t: t, srv: srv, nodes: map[string]*memcoord.Conn{}, positions: map[string]*wire.NodeStatus{}}
	observer := srv.Connect()
	t.Cleanup(func() { observer.Close() })
	f.observer = coord.NewCluster(observer, "test")
	return f
}

func addrOf(id string) string { return "fake-" + id + ":1" }

// probe answers with the positions the test set.
func (f *fakeCluster) probe(_ context.Context, addr string) (*wire.NodeStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.positions[addr]; ok {
		return st, nil
	}
	return nil, fmt.Errorf("no node at %s", addr)
}

func (f *fakeCluster) setPosition(id string, epoch, seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.positions[addrOf(id)] = &wire.NodeStatus{Id: id, LastEpoch: epoch, LastSeq: seq}
}

// coordinator starts a coordinator on its own session; probe nil → f.probe.
func (f *fakeCluster) coordinator(id string, probe func(context.Context, string) (*wire.NodeStatus, error)) (*Coordinator, *memcoord.Conn) {
	f.t.Helper()
	return f.coordinatorWith(id, probe, Config{})
}

// coordinatorWith is coordinator with the migration settings of cfg.
func (f *fakeCluster) coordinatorWith(id string, probe func(context.Context, string) (*wire.NodeStatus, error), cfg Config) (*Coordinator, *memcoord.Conn) {
	f.t.Helper()
	if probe == nil {
		probe = f.probe
	}
	conn := f.srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var session coord.Conn = conn
	if f.wrap != nil {
		session = f.wrap(conn)
	}
	cfg.Cluster, cfg.ID, cfg.Listen, cfg.Slots = coord.NewCluster(session, "test"), id, "127.0.0.1:0", 16
	cfg.AssignDelay, cfg.NodeStatus, cfg.Logger = 20*time.Millisecond, probe, discard
	c, err := Start(ctx, cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close(); conn.Close() })
	f.coords = append(f.coords, c)
	return c, conn
}

func (f *fakeCluster) stopCoordinators() {
	for _, c := range f.coords {
		c.Close()
	}
}

// leader is one term of leadership on a session of its own, driven by the
// test instead of an election.
func (f *fakeCluster) leader(probe func(context.Context, string) (*wire.NodeStatus, error)) *leader {
	conn := f.srv.Connect()
	f.t.Cleanup(func() { conn.Close() })
	c := &Coordinator{cfg: Config{Cluster: coord.NewCluster(conn, "test"), NodeStatus: probe}, log: discard, metrics: newMetrics()}
	return &leader{c: c, stranded: map[string]uint64{}}
}

// register registers fake data node id of group on a session of its own.
func (f *fakeCluster) register(id, group string) {
	f.t.Helper()
	conn := f.srv.Connect()
	f.t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	f.t.Cleanup(cancel)
	if err := coord.NewCluster(conn, "test").RegisterNode(ctx, coord.NodeInfo{ID: id, Group: group, Addr: addrOf(id)}); err != nil {
		f.t.Fatal(err)
	}
	f.nodes[id] = conn
}

// kill ends node id's session: its registration goes.
func (f *fakeCluster) kill(id string) { f.nodes[id].Close() }

func (f *fakeCluster) waitGroup(name string, ok func(*coord.Group) bool) *coord.Group {
	f.t.Helper()
	deadline := time.Now().Add(waitFor)
	var g *coord.Group
	for time.Now().Before(deadline) {
		if cur, _, err := f.observer.Group(context.Background(), name); err == nil {
			if g = cur; ok(g) {
				return g
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.t.Fatalf("group %s never reached the expected state; last %+v", name, g)
	return nil
}

// setISR records isr as group's in-sync set, as its primary would.
func (f *fakeCluster) setISR(group string, isr ...string) *coord.Group {
	f.t.Helper()
	g, err := f.observer.UpdateGroup(context.Background(), group, func(g *coord.Group) error {
		g.ISR = isr
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return g
}

// groupOf starts a coordinator and a group g1 whose primary is p and whose
// members and ISR are p followed by others.
func groupOf(t *testing.T, p string, others ...string) (*fakeCluster, *coord.Group) {
	f := newFakeCluster(t)
	f.coordinator("c1", nil)
	f.register(p, "g1")
	f.waitGroup("g1", func(g *coord.Group) bool { return g.Primary == p })
	for _, id := range others {
		f.register(id, "g1")
	}
	f.waitGroup("g1", func(g *coord.Group) bool { return len(g.Members) == 1+len(others) })
	return f, f.setISR("g1", append([]string{p}, others...)...)
}

func TestAdmitsNodesAndAssignsSlots(t *testing.T) {
	f := newFakeCluster(t)
	f.coordinator("c1", nil)
	f.register("x", "g1")
	f.register("y", "g2")
	f.register("z", "g1")
	g1 := f.waitGroup("g1", func(g *coord.Group) bool { return len(g.Members) == 2 })
	if g1.Primary != "x" || g1.Epoch != 1 || !slices.Equal(g1.ISR, []string{"x"}) || !slices.Equal(g1.Members, []string{"x", "z"}) {
		t.Fatalf("g1 = %+v; want primary x (the first admitted) at epoch 1, ISR [x], members [x z]", g1)
	}
	f.waitGroup("g2", func(g *coord.Group) bool { return g.Primary == "y" })
	deadline := time.Now().Add(waitFor)
	for {
		table, _, err := f.observer.SlotTable(context.Background())
		if err == nil && !slices.Contains(table.Owners, "") {
			if n1, n2 := len(table.SlotsOf("g1")), len(table.SlotsOf("g2")); n1 != 8 || n2 != 8 {
				t.Fatalf("slots spread %d/%d over g1/g2; want 8/8", n1, n2)
			}
			if rs := table.Ranges(); len(rs) != 2 {
				t.Fatalf("slot ranges %v; want two contiguous ranges", rs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slots never assigned: %v %v", table, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Failover promotes the live in-sync member with the newest (last epoch,
// last sequence), not the first or the one with the highest sequence.
func TestFailoverPromotesNewestInSyncMember(t *testing.T) {
	f, g := groupOf(t, "p", "a", "b", "c", "d")
	f.setPosition("a", 2, 100) // longest log, older epoch
	f.setPosition("b", 3, 5)   // newest
	f.setPosition("c", 3, 4)
	f.setPosition("d", 3, 9) // newest of all, but not in sync
	f.setISR("g1", "p", "a", "b", "c")
	f.kill("p")
	ng := f.waitGroup("g1", func(ng *coord.Group) bool { return ng.Primary != "p" })
	if ng.Primary != "b" || ng.Epoch != g.Epoch+1 || slices.Contains(ng.ISR, "p") {
		t.Fatalf("after failover %+v; want primary b at epoch %d without p in the ISR", ng, g.Epoch+1)
	}
}

// A leader that loses its session while it is deciding a failover acts on
// nothing it decided: the decision is made again by whoever leads next,
// from what the nodes report then.
func TestLeaderLosingSessionMidDecisionActsOnNothing(t *testing.T) {
	f := newFakeCluster(t)
	var (
		mu      sync.Mutex
		blocked bool
	)
	entered, release := make(chan struct{}), make(chan struct{})
	probe := func(ctx context.Context, addr string) (*wire.NodeStatus, error) {
		st, err := f.probe(ctx, addr)
		mu.Lock()
		first := addr == addrOf("b") && !blocked
		blocked = blocked || first
		mu.Unlock()
		if first {
			// A slow node: its answer, true when it was asked, comes
			// after the leader lost its session and knows it (its
			// leadership context ended; the probe's own timeout is 1s).
			close(entered)
			<-release
			<-ctx.Done()
		}
		return st, err
	}
	_, conn := f.coordinator("c1", probe)
	f.register("p", "g1")
	f.waitGroup("g1", func(g *coord.Group) bool { return g.Primary == "p" })
	f.register("a", "g1")
	f.register("b", "g1")
	f.waitGroup("g1", func(g *coord.Group) bool { return len(g.Members) == 3 })
	g := f.setISR("g1", "p", "a", "b")
	f.setPosition("a", 1, 10)
	f.setPosition("b", 1, 5)
	f.kill("p")
	select {
	case <-entered:
	case <-time.After(waitFor):
		t.Fatal("the leader never asked the in-sync members for their positions")
	}
	conn.ExpireSession()
	// The old term would promote a; by now b has the newest log.
	f.setPosition("b", 1, 20)
	close(release)
	ng := f.waitGroup("g1", func(ng *coord.Group) bool { return ng.Primary != "p" })
	if ng.Primary != "b" || ng.Epoch != g.Epoch+1 {
		t.Fatalf("after failover %+v; want b, chosen at epoch %d by the leader of the new session", ng, g.Epoch+1)
	}
}

// Two leaders (a deposed one that has not noticed, and its successor)
// deciding the same failover at once promote exactly one member: the
// compare-and-set of the second finds the group changed.
func TestRacingLeadersPromoteOnce(t *testing.T) {
	f, g := groupOf(t, "p", "a", "b")
	f.setPosition("a", 1, 10)
	f.setPosition("b", 1, 10)
	// Each leader sees a different member as the newest, and both decide
	// before either writes.
	var both sync.WaitGroup
	both.Add(2)
	probeFor := func(favourite string) func(context.Context, string) (*wire.NodeStatus, error) {
		return func(ctx context.Context, addr string) (*wire.NodeStatus, error) {
			st, err := f.probe(ctx, addr)
			if err == nil && addr == addrOf(favourite) {
				both.Done()
				both.Wait()
				st = &wire.NodeStatus{Id: st.Id, LastEpoch: st.LastEpoch, LastSeq: st.LastSeq + 1}
			}
			return st, err
		}
	}
	// Stop the running coordinator so only the two racing leaders act.
	leaders := []*leader{f.leader(probeFor("a")), f.leader(probeFor("b"))}
	f.stopCoordinators()
	f.kill("p")
	nodes, err := f.observer.Nodes(context.Background())
	if err != nil || slices.ContainsFunc(nodes, func(n coord.NodeInfo) bool { return n.ID == "p" }) {
		t.Fatalf("p still registered after its kill (%v): %v", err, nodes)
	}
	var wg sync.WaitGroup
	for _, l := range leaders {
		wg.Add(1)
		go func() { defer wg.Done(); l.failover(context.Background()) }()
	}
	wg.Wait()
	ng, _, err := f.observer.Group(context.Background(), "g1")
	if err != nil {
		t.Fatal(err)
	}
	if ng.Epoch != g.Epoch+1 || (ng.Primary != "a" && ng.Primary != "b") {
		t.Fatalf("after two racing failovers %+v; want one promotion, to epoch %d", ng, g.Epoch+1)
	}
}

// A coordinator whose routing service stops fails as a whole: Done closes
// and Err says why, so its supervisor does not keep a coordinator that
// answers no one.
func TestRouteServiceFailureStopsCoordinator(t *testing.T) {
	f := newFakeCluster(t)
	c, _ := f.coordinator("c1", nil)
	c.lis.Close() // the listener dies under the running service
	select {
	case <-c.Done():
	case <-time.After(waitFor):
		t.Fatal("the coordinator kept running without its routing service")
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "route service stopped") {
		t.Fatalf("Err() = %v; want the route service's failure", err)
	}
	if err := c.Close(); err != c.Err() {
		t.Fatalf("Close() = %v; want Err() %v", err, c.Err())
	}
}
