package coordtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

type counter struct {
	N    int      `json:"n"`
	Seen []string `json:"seen"`
}

func testUpdateJSON(t *testing.T, s *suite) {
	ctx, c := testCtx(t), s.newConn(t)
	p := base(t) + "/counter"
	_, err := c.Create(ctx, p, []byte(`{"n":0}`))
	must(t, err, "create")
	const writers, each = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		conn := s.newConn(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := coord.UpdateJSON(ctx, conn, p, func(v *counter) error {
					v.N++
					v.Seen = append(v.Seen, fmt.Sprintf("%d.%d", w, i))
					return nil
				})
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err, "concurrent update")
	}
	got, v, err := coord.GetJSON[counter](ctx, c, p)
	must(t, err, "get")
	if got.N != writers*each || len(got.Seen) != writers*each {
		t.Fatalf("after %d increments: %+v (lost updates)", writers*each, got)
	}
	// No change, or ErrNoChange: nothing written.
	_, err = coord.UpdateJSON(ctx, c, p, func(v *counter) error { return nil })
	must(t, err, "no-op update")
	same, err := coord.UpdateJSON(ctx, c, p, func(v *counter) error {
		v.N = -1
		return coord.ErrNoChange
	})
	must(t, err, "ErrNoChange update")
	if same.N != writers*each {
		t.Errorf("ErrNoChange returned %+v, want the stored record", same)
	}
	if _, v2, _ := c.Get(ctx, p); v2 != v {
		t.Errorf("version moved from %d to %d without a change", v, v2)
	}
	boom := errors.New("boom")
	_, err = coord.UpdateJSON(ctx, c, p, func(v *counter) error { return boom })
	wantErr(t, err, boom, "fn error")
	_, err = c.Update(ctx, p, []byte("not json"), coord.AnyVersion)
	must(t, err, "corrupt")
	_, _, err = coord.GetJSON[counter](ctx, c, p)
	wantErr(t, err, coord.ErrBadData, "get corrupt record")
}

func testCreateIfMissingRace(t *testing.T, s *suite) {
	ctx := testCtx(t)
	name := unique(t)
	var wg sync.WaitGroup
	created := make([]bool, 2)
	errs := make([]error, 2)
	for i := range 2 {
		cl := view(s.newConn(t), name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			created[i], errs[i] = cl.CreateIfMissing(ctx, coord.ClusterMeta{Slots: 16 * (i + 1), ReplicationFactor: 2})
		}()
	}
	wg.Wait()
	must(t, errors.Join(errs...), "create concurrently")
	if created[0] == created[1] {
		t.Fatalf("created = %v, want exactly one creator", created)
	}
	winner := 16
	if created[1] {
		winner = 32
	}
	cl := view(s.newConn(t), name)
	meta, err := cl.Meta(ctx)
	must(t, err, "meta")
	if meta.Name != name || meta.Slots != winner || meta.ReplicationFactor != 2 || meta.CreatedAt.IsZero() {
		t.Errorf("meta = %+v, want the winner's (%d slots)", meta, winner)
	}
	table, _, err := cl.SlotTable(ctx)
	must(t, err, "slot table")
	if table.Version != 1 || len(table.Owners) != winner || len(table.SlotsOf("")) != winner {
		t.Errorf("slot table = v%d, %d slots, %d unassigned; want v1, %d unassigned", table.Version, len(table.Owners), len(table.SlotsOf("")), winner)
	}
	groups, err := cl.Groups(ctx)
	must(t, err, "groups")
	nodes, err := cl.Nodes(ctx)
	must(t, err, "nodes")
	coords, err := cl.Coordinators(ctx)
	must(t, err, "coordinators")
	if len(groups)+len(nodes)+len(coords) != 0 {
		t.Errorf("new cluster has groups %v, nodes %v, coordinators %v", groups, nodes, coords)
	}
	again, err := cl.CreateIfMissing(ctx, coord.ClusterMeta{Slots: 8, ReplicationFactor: 1})
	must(t, err, "create again")
	if again {
		t.Error("second CreateIfMissing reported created")
	}
	_, err = view(s.newConn(t), name+"x").CreateIfMissing(ctx, coord.ClusterMeta{Slots: 0, ReplicationFactor: 1})
	wantErr(t, err, coord.ErrInvalid, "zero slots")
}

func testNoCluster(t *testing.T, s *suite) {
	ctx, c := testCtx(t), s.newConn(t)
	cl := view(c, unique(t))
	_, err := cl.Meta(ctx)
	wantErr(t, err, coord.ErrNoCluster, "meta of a missing cluster")
	wantErr(t, err, coord.ErrNoNode, "meta of a missing cluster")
	_, _, err = cl.SlotTable(ctx)
	wantErr(t, err, coord.ErrNoCluster, "slot table of a missing cluster")
	wantErr(t, cl.EnsureGroup(ctx, "g"), coord.ErrNoCluster, "group in a missing cluster")
	wantErr(t, cl.RegisterNode(ctx, coord.NodeInfo{ID: "n"}), coord.ErrNoCluster, "node in a missing cluster")
	_, err = view(c, "bad/name").Meta(ctx)
	wantErr(t, err, coord.ErrInvalid, "invalid cluster name")
}

func newCluster(t testing.TB, ctx context.Context, conn coord.Conn, slots int) *coord.Cluster {
	t.Helper()
	cl := view(conn, unique(t))
	_, err := cl.CreateIfMissing(ctx, coord.ClusterMeta{Slots: slots, ReplicationFactor: 2})
	must(t, err, "create cluster")
	return cl
}

func testUpdateSlotTableConcurrent(t *testing.T, s *suite) {
	ctx := testCtx(t)
	cl := newCluster(t, ctx, s.newConn(t), 64)
	const updaters = 16
	var wg sync.WaitGroup
	errs := make(chan error, updaters)
	for i := range updaters {
		mine := view(s.newConn(t), cl.Name())
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := mine.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
				t.Owners[i*4] = fmt.Sprintf("g%d", i%3)
				return nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err, "concurrent slot table update")
	}
	table, _, err := cl.SlotTable(ctx)
	must(t, err, "slot table")
	for i := range updaters {
		if got, want := table.Owner(i*4), fmt.Sprintf("g%d", i%3); got != want {
			t.Errorf("slot %d owned by %q, want %q (lost update)", i*4, got, want)
		}
	}
	if table.Version != 1+updaters {
		t.Errorf("version %d after %d changes, want %d", table.Version, updaters, 1+updaters)
	}

	// No change → no new version; a resize is refused.
	same, err := cl.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
		t.Owners[0] = table.Owners[0]
		t.Version = 99
		return nil
	})
	must(t, err, "no-op update")
	if same.Version != table.Version {
		t.Errorf("no-op update moved the version to %d", same.Version)
	}
	_, err = cl.UpdateSlotTable(ctx, func(t *coord.SlotTable) error { return coord.ErrNoChange })
	must(t, err, "ErrNoChange")
	_, err = cl.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
		t.Owners = append(t.Owners, "g1")
		return nil
	})
	wantErr(t, err, coord.ErrInvalid, "resize")
	after, _, err := cl.SlotTable(ctx)
	must(t, err, "slot table")
	if after.Version != table.Version {
		t.Errorf("version %d after no change, want %d", after.Version, table.Version)
	}
}

func testUpdateGroupConcurrent(t *testing.T, s *suite) {
	ctx := testCtx(t)
	cl := newCluster(t, ctx, s.newConn(t), 8)
	_, _, err := cl.Group(ctx, "g")
	wantErr(t, err, coord.ErrNoNode, "missing group")
	_, err = cl.UpdateGroup(ctx, "g", func(*coord.Group) error { return nil })
	wantErr(t, err, coord.ErrNoNode, "update missing group")

	var wg sync.WaitGroup
	const updaters = 12
	errs := make(chan error, updaters+2)
	for range 2 {
		mine := view(s.newConn(t), cl.Name())
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- mine.EnsureGroup(ctx, "g")
		}()
	}
	wg.Wait()
	for i := range updaters {
		mine := view(s.newConn(t), cl.Name())
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := mine.UpdateGroup(ctx, "g", func(g *coord.Group) error {
				g.Epoch++
				g.Members = append(g.Members, fmt.Sprintf("n%02d", i))
				return nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err, "concurrent group update")
	}
	g, _, err := cl.Group(ctx, "g")
	must(t, err, "group")
	slices.Sort(g.Members)
	if g.Epoch != updaters || len(slices.Compact(g.Members)) != updaters {
		t.Errorf("group = %+v, want epoch %d and %d members (lost update)", g, updaters, updaters)
	}
	_, err = cl.UpdateGroup(ctx, "g", func(g *coord.Group) error {
		g.Name = "h"
		return nil
	})
	wantErr(t, err, coord.ErrInvalid, "rename")
	wantErr(t, cl.EnsureGroup(ctx, "a/b"), coord.ErrInvalid, "invalid group name")
}

func testGroupsAndWatches(t *testing.T, s *suite) {
	ctx, c := testCtx(t), s.newConn(t)
	cl := newCluster(t, ctx, c, 8)
	must(t, cl.EnsureGroup(ctx, "b"), "ensure b")
	must(t, cl.EnsureGroup(ctx, "a"), "ensure a")
	groups, err := cl.Groups(ctx)
	must(t, err, "groups")
	if len(groups) != 2 || groups[0].Name != "a" || groups[1].Name != "b" {
		t.Fatalf("groups = %+v, want a, b", groups)
	}

	writer := view(s.newConn(t), cl.Name())
	g, gch, err := cl.WatchGroup(ctx, "a")
	must(t, err, "watch group")
	if g.Primary != "" {
		t.Fatalf("new group has primary %q", g.Primary)
	}
	_, err = writer.UpdateGroup(ctx, "a", func(g *coord.Group) error {
		g.Primary, g.Epoch = "n1", g.Epoch+1
		return nil
	})
	must(t, err, "update group")
	got, ok := next(t, gch)
	if !ok || got.Primary != "n1" || got.Epoch != 1 {
		t.Fatalf("group event = %+v (open %v)", got, ok)
	}

	table, tch, err := cl.WatchSlotTable(ctx)
	must(t, err, "watch slot table")
	_, err = writer.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
		copy(t.Owners, coord.SpreadEvenly(len(t.Owners), []string{"a", "b"}))
		return nil
	})
	must(t, err, "update slot table")
	nt, ok := next(t, tch)
	if !ok || nt.Version != table.Version+1 || nt.Owner(0) != "a" || nt.Owner(7) != "b" {
		t.Fatalf("slot table event = %+v (open %v)", nt, ok)
	}
	wctx, cancel := context.WithCancel(ctx)
	_, tch, err = cl.WatchSlotTable(wctx)
	must(t, err, "watch slot table")
	cancel()
	closedWith(t, tch)
}

func testNodes(t *testing.T, s *suite) {
	ctx := testCtx(t)
	cl := newCluster(t, ctx, s.newConn(t), 8)
	register := func(ctx context.Context, id string) coord.Conn {
		conn := s.newConn(t)
		err := view(conn, cl.Name()).RegisterNode(ctx, coord.NodeInfo{ID: id, Group: "g", Addr: id + ":1"})
		must(t, err, "register "+id)
		return conn
	}
	ctx1, leave1 := context.WithCancel(ctx)
	defer leave1()
	register(ctx1, "n2")
	conn2 := register(ctx, "n1")
	nodes, err := cl.Nodes(ctx)
	must(t, err, "nodes")
	if ids := nodeIDs(nodes); !slices.Equal(ids, []string{"n1", "n2"}) {
		t.Fatalf("nodes = %v, want [n1 n2]", ids)
	}
	if nodes[0].Addr != "n1:1" || nodes[0].Group != "g" || nodes[0].StartedAt.IsZero() {
		t.Errorf("node = %+v", nodes[0])
	}

	nodes, ch, err := cl.WatchNodes(ctx)
	must(t, err, "watch nodes")
	if len(nodes) != 2 {
		t.Fatalf("watch starts with %v", nodeIDs(nodes))
	}
	await := func(want ...string) {
		t.Helper()
		for {
			nodes, ok := next(t, ch)
			if !ok {
				t.Fatalf("nodes watch closed before %v", want)
			}
			if slices.Equal(nodeIDs(nodes), want) {
				return
			}
		}
	}
	register(ctx, "n3")
	await("n1", "n2", "n3")
	leave1()
	await("n1", "n3")

	// A registration outlives session expiry.
	s.faults.ExpireSession(t, conn2)
	eventually(t, "n1 registered again after its session expired", func() bool {
		nodes, err := cl.Nodes(ctx)
		return err == nil && slices.Contains(nodeIDs(nodes), "n1")
	})
}

func nodeIDs(nodes []coord.NodeInfo) []string {
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	return ids
}

func testCoordinators(t *testing.T, s *suite) {
	ctx, c1, c2 := testCtx(t), s.newConn(t), s.newConn(t)
	cl := newCluster(t, ctx, c1, 8)
	cand1, err := cl.CampaignCoordinator(ctx, coord.CoordinatorInfo{ID: "c1", Addr: "h1:1"})
	must(t, err, "campaign c1")
	cand2, err := view(c2, cl.Name()).CampaignCoordinator(ctx, coord.CoordinatorInfo{ID: "c2", Addr: "h2:1"})
	must(t, err, "campaign c2")
	lead(t, ctx, cand1)
	coords, err := cl.Coordinators(ctx)
	must(t, err, "coordinators")
	if len(coords) != 2 || coords[0].ID != "c1" || coords[1].ID != "c2" || coords[0].Addr != "h1:1" {
		t.Fatalf("coordinators = %+v, want c1 then c2", coords)
	}
	s.faults.ExpireSession(t, c1)
	lead(t, ctx, cand2)
	coords, err = view(c2, cl.Name()).Coordinators(ctx)
	must(t, err, "coordinators")
	if len(coords) != 1 || coords[0].ID != "c2" {
		t.Fatalf("coordinators = %+v, want c2", coords)
	}
}

func testRoutes(t *testing.T, s *suite) {
	ctx := testCtx(t)
	cl := newCluster(t, ctx, s.newConn(t), 8)
	for _, g := range []string{"g1", "g2"} {
		must(t, cl.EnsureGroup(ctx, g), "ensure "+g)
	}
	_, err := cl.UpdateGroup(ctx, "g1", func(g *coord.Group) error {
		g.Epoch, g.Primary, g.Members, g.ISR = 3, "n1", []string{"n1", "n2"}, []string{"n1", "n2"}
		return nil
	})
	must(t, err, "update g1")
	_, err = cl.UpdateGroup(ctx, "g2", func(g *coord.Group) error {
		g.Primary, g.Members = "n9", []string{"n9"}
		return nil
	})
	must(t, err, "update g2")
	for _, id := range []string{"n1", "n2"} {
		must(t, cl.RegisterNode(ctx, coord.NodeInfo{ID: id, Group: "g1", Addr: id + ":7000"}), "register "+id)
	}
	_, err = cl.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
		copy(t.Owners, coord.SpreadEvenly(8, []string{"g2", "g1"}))
		t.Owners[7] = ""
		return nil
	})
	must(t, err, "assign slots")

	rt, err := cl.Routes(ctx)
	must(t, err, "routes")
	g1, ok := rt.GroupOf(0)
	want := []coord.NodeRoute{{ID: "n1", Addr: "n1:7000"}, {ID: "n2", Addr: "n2:7000"}}
	if !ok || g1.Name != "g1" || g1.Epoch != 3 || g1.Primary != "n1" || g1.PrimaryAddr != "n1:7000" || !slices.Equal(g1.Members, want) {
		t.Errorf("route of slot 0 = %+v (found %v)", g1, ok)
	}
	g2, ok := rt.GroupOf(4)
	if !ok || g2.Name != "g2" || g2.Primary != "n9" || g2.PrimaryAddr != "" || len(g2.Members) != 1 || g2.Members[0].Addr != "" {
		t.Errorf("route of slot 4 = %+v (found %v), want g2 with an unregistered primary", g2, ok)
	}
	for _, slot := range []int{7, -1, 8} {
		if r, ok := rt.GroupOf(slot); ok {
			t.Errorf("slot %d routed to %+v, want none", slot, r)
		}
	}
}

// ReclaimNode deletes a live session's registration only when it names the
// same host and directory, and never the caller's own registration.
func testReclaimNode(t *testing.T, s *suite) {
	ctx := testCtx(t)
	cl := newCluster(t, ctx, s.newConn(t), 8)
	// The registration of a process that died: its session lives on, and
	// nothing keeps the registration in place any more.
	old := coord.NodeInfo{ID: "n1", Group: "g", Addr: "a:1", Host: "h1", Dir: "/d1", Boot: "b1", StartedAt: time.Now().UTC().Round(0)}
	data, err := json.Marshal(old)
	must(t, err, "encode")
	must(t, s.newConn(t).CreateEphemeral(ctx, coord.ClusterPath(cl.Name())+"/nodes/n1", data), "register n1")

	next := old
	next.StartedAt = old.StartedAt.Add(time.Second)
	mine := view(s.newConn(t), cl.Name())
	otherBoot, noBoot := next, next
	otherBoot.Boot, noBoot.Boot = "b2", ""
	for _, other := range []coord.NodeInfo{{ID: "n1", Host: "h2", Dir: "/d1", Boot: "b1"}, {ID: "n1", Host: "h1", Dir: "/d2", Boot: "b1"}, otherBoot, noBoot, old} {
		ok, err := mine.ReclaimNode(ctx, other)
		must(t, err, "reclaim another's registration")
		if ok {
			t.Fatalf("reclaim as %+v deleted the registration of %+v", other, old)
		}
	}
	wantErr(t, mine.RegisterNode(ctx, next), coord.ErrNodeExists, "register over a live registration")
	ok, err := mine.ReclaimNode(ctx, next)
	must(t, err, "reclaim")
	if !ok {
		t.Fatal("the stale registration of the same host and directory was not deleted")
	}
	must(t, mine.RegisterNode(ctx, next), "register after reclaiming")
	nodes, err := cl.Nodes(ctx)
	must(t, err, "nodes")
	if len(nodes) != 1 || !nodes[0].StartedAt.Equal(next.StartedAt) || nodes[0].Host != "h1" || nodes[0].Dir != "/d1" {
		t.Fatalf("nodes = %+v; want the new registration", nodes)
	}
	ok, err = mine.ReclaimNode(ctx, next)
	must(t, err, "reclaim own")
	if ok {
		t.Fatal("reclaim deleted the caller's own registration")
	}
}
