package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/memcoord"
	"github.com/thunderyurts/thunderyurts/daemon/coordinator"
	"github.com/thunderyurts/thunderyurts/daemon/datanode"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// inProcessCluster runs a coordinator and one single-node group per name in
// this process, on an in-memory coordination service.
func inProcessCluster(t *testing.T, groups ...string) (*coord.Cluster, map[string]*datanode.Node) {
	t.Helper()
	cl := coord.NewCluster(memcoord.New().Connect(), "test")
	return cl, startInProcess(t, cl, groups...)
}

// startInProcess runs a coordinator and one single-node group per name in
// this process on cl, and waits until every group owns slots and has a
// primary.
func startInProcess(t *testing.T, cl *coord.Cluster, groups ...string) map[string]*datanode.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	co, err := coordinator.Start(ctx, coordinator.Config{Cluster: cl, Listen: "127.0.0.1:0", Slots: 32, ReplicationFactor: 1, AssignDelay: 10 * time.Millisecond, NodeStatus: nodeclient.Nodes{}.NodeStatus, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { co.Close() })
	nodes := map[string]*datanode.Node{}
	dir := t.TempDir()
	for _, g := range groups {
		n, err := datanode.Start(ctx, datanode.Config{Cluster: cl, Group: g, Listen: "127.0.0.1:0", Dir: filepath.Join(dir, g), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes[g] = n
	}
	for {
		rt, err := cl.Routes(ctx)
		if err == nil && len(rt.Table.SlotsOf(groups[len(groups)-1])) > 0 && rt.Groups[groups[0]].PrimaryAddr != "" {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("slots never assigned")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nodes
}

func newClient(t *testing.T, routes client.RouteSource) *client.Client {
	t.Helper()
	c, err := client.New(context.Background(), routes, client.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPutGetDeleteScan(t *testing.T) {
	cl, _ := inProcessCluster(t, "g1", "g2")
	c := newClient(t, cl)
	ctx := context.Background()
	var keys []string
	for i := 0; i < 200; i++ {
		k := fmt.Sprintf("key-%03d", i)
		keys = append(keys, k)
		if err := c.Put(ctx, []byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := c.Get(ctx, []byte("key-007")); err != nil || string(v) != "vkey-007" {
		t.Fatalf("get = %q, %v", v, err)
	}
	if err := c.Delete(ctx, []byte("key-007")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, []byte("key-007")); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == "key-007" })
	var got []string
	err := c.Scan(ctx, client.ScanOptions{PageSize: 7}, func(k, v []byte) error {
		got = append(got, string(k))
		return nil
	})
	if err != nil || !slices.Equal(got, keys) {
		t.Fatalf("scan: %v, %d keys, first %v", err, len(got), got[:min(3, len(got))])
	}
	got = got[:0]
	err = c.Scan(ctx, client.ScanOptions{Prefix: []byte("key-1"), Limit: 5}, func(k, v []byte) error {
		got = append(got, string(k))
		return nil
	})
	if err != nil || !slices.Equal(got, []string{"key-100", "key-101", "key-102", "key-103", "key-104"}) {
		t.Fatalf("scan prefix limit: %v %v", got, err)
	}
}

func TestInvalidInputIsRefusedBeforeSending(t *testing.T) {
	cl, _ := inProcessCluster(t, "g1")
	c := newClient(t, cl)
	ctx := context.Background()
	for _, key := range [][]byte{nil, bytes.Repeat([]byte("k"), client.MaxKeySize+1)} {
		if err := c.Put(ctx, key, []byte("v")); !errors.Is(err, client.ErrInvalidArgument) {
			t.Errorf("put key of %d bytes: %v", len(key), err)
		}
	}
	if err := c.Put(ctx, []byte("big"), make([]byte, 4<<20+1)); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("oversized value: %v", err)
	}
	// A value over any node's limit is refused before it is sent: it must
	// not cost the requests batched with it their connection.
	other := make(chan error, 1)
	go func() { other <- c.Put(ctx, []byte("small"), []byte("v")) }()
	if err := c.Put(ctx, []byte("huge"), make([]byte, client.MaxValueSize+1)); !errors.Is(err, client.ErrInvalidArgument) || !strings.Contains(err.Error(), "no node accepts") {
		t.Errorf("value over every node's limit: %v", err)
	}
	if err := <-other; err != nil {
		t.Errorf("put batched next to a huge value: %v", err)
	}
	if _, err := c.Get(ctx, []byte("big")); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("oversized value was written: %v", err)
	}
}

// countingRoutes passes reads through to the cluster, counting them.
type countingRoutes struct {
	cl    *coord.Cluster
	reads int
}

func (r *countingRoutes) Routes(ctx context.Context) (*coord.RouteTable, error) {
	r.reads++
	return r.cl.Routes(ctx)
}

func TestFollowsMovedSlots(t *testing.T) {
	cl, nodes := inProcessCluster(t, "g1", "g2")
	ctx := context.Background()
	routes := &countingRoutes{cl: cl}
	c := newClient(t, routes)
	before := c.Routes().Table.Version

	// Move every slot of g1 to g2 behind the client's back.
	moved, err := cl.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
		for s, owner := range t.Owners {
			if owner == "g1" {
				t.Owners[s] = "g2"
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		for {
			st, err := nodeclient.Nodes{}.NodeStatus(ctx, n.Addr())
			if err != nil {
				t.Fatal(err)
			}
			if st.TableVersion == moved.Version {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// A key whose slot the client still routes to g1 gets MOVED from g1's
	// node, and the client retries at g2.
	var key []byte
	for i := 0; key == nil; i++ {
		k := []byte(fmt.Sprintf("k%d", i))
		if c.Routes().Table.Owner(coord.SlotOf(k, 32)) == "g1" {
			key = k
		}
	}
	readsBefore := routes.reads
	if err := c.Put(ctx, key, []byte("v")); err != nil {
		t.Fatalf("put after move: %v", err)
	}
	if c.Routes().Table.Version <= before || routes.reads == readsBefore {
		t.Fatalf("client did not refresh its routes: version %d → %d", before, c.Routes().Table.Version)
	}
	if v, err := c.Get(ctx, key); err != nil || string(v) != "v" {
		t.Fatalf("get after move = %q, %v", v, err)
	}
}

func TestUnreachablePrimaryFailsWithinTimeout(t *testing.T) {
	routes := &staticRoutes{rt: routesTo("127.0.0.1:1")}
	c := newClient(t, routes)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Put(ctx, []byte("k"), []byte("v"))
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("put to a dead node: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("put to a dead node took %s with a 500ms deadline", time.Since(start))
	}
	if routes.count() < 2 {
		t.Fatalf("client never refreshed its routes while the primary was unreachable")
	}
}

// TestTimeoutKeepsTheRefusal: when the timeout cuts short a retry of a
// refused request (a primary short of in-sync replicas), the error still
// says what the earlier attempts met.
func TestTimeoutKeepsTheRefusal(t *testing.T) {
	n := startFakeNode(t)
	n.setRefuse(wire.Code_UNAVAILABLE)
	c := newClientTimeout(t, &staticRoutes{rt: routesTo(n.addr)}, 500*time.Millisecond)
	go func() {
		time.Sleep(100 * time.Millisecond) // the first attempts are refused
		n.freeze()                         // the next one waits out the timeout
	}()
	err := c.Put(context.Background(), []byte("k"), []byte("v"))
	if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "(before: slot") {
		t.Fatalf("put refused, then cut short by the timeout: %v; want the refusal and the deadline", err)
	}
}

// TestSilentNodeFailsWithinTimeout: a node that takes requests and never
// answers fails a request at the client's timeout, with a context that has
// no deadline of its own (the pipe's sweeper, not a timer per request,
// enforces it).
func TestSilentNodeFailsWithinTimeout(t *testing.T) {
	n := startFakeNode(t)
	n.freeze()
	c := newClientTimeout(t, &staticRoutes{rt: routesTo(n.addr)}, 300*time.Millisecond)
	start := time.Now()
	err := c.Put(context.Background(), []byte("k"), []byte("v"))
	if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put to a silent node: %v", err)
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 2*time.Second {
		t.Fatalf("put to a silent node failed after %s with a 300ms timeout", took)
	}
}
