package datanode

import (
	"context"
	"github.com/thunderyurts/thunderyurts/internal/poll"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"storj.io/drpc/drpcconn"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/memcoord"
	"github.com/thunderyurts/thunderyurts/daemon/coordinator"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// patience bounds every wait for something a test expects to happen.
const patience = 20 * time.Second

// testCluster is a coordinator and data nodes of group g1 in this process,
// on an in-memory coordination service.
type testCluster struct {
	t    *testing.T
	srv  *memcoord.Server
	view *coord.Cluster // a session of the test's own
	log  *slog.Logger
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("DATANODE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	c := &testCluster{t: t, srv: memcoord.New(), log: testLogger(t)}
	c.view = coord.NewCluster(c.srv.Connect(), "test").WithLogger(c.log)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	co, err := coordinator.Start(ctx, coordinator.Config{Cluster: coord.NewCluster(c.srv.Connect(), "test").WithLogger(c.log),
		Listen: "127.0.0.1:0", Slots: 16, ReplicationFactor: 2, AssignDelay: 10 * time.Millisecond, NodeStatus: nodeclient.Nodes{}.NodeStatus, Logger: c.log.With("daemon", "coord")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { co.Close() })
	return c
}

// startNode starts a data node of g1 in dir over conn (a new session when nil).
func (c *testCluster) startNode(dir string, conn coord.Conn, tweak func(*Config)) *Node {
	c.t.Helper()
	if conn == nil {
		conn = c.srv.Connect()
	}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	cfg := Config{Cluster: coord.NewCluster(conn, "test").WithLogger(c.log), Group: "g1", Listen: "127.0.0.1:0", Dir: dir, Logger: c.log}
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := Start(ctx, cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { n.Close() })
	return n
}

// group reads g1.
func (c *testCluster) group() *coord.Group {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	g, _, err := c.view.Group(ctx, "g1")
	if err != nil {
		c.t.Fatal(err)
	}
	return g
}

// waitGroup waits until g1 satisfies cond.
func (c *testCluster) waitGroup(what string, cond func(*coord.Group) bool) *coord.Group {
	c.t.Helper()
	var g *coord.Group
	eventually(c.t, what, func() bool {
		g = c.group()
		return cond(g)
	})
	return g
}

// waitServing waits until n leads g1 with every node of want in sync and
// serves (a put goes through), and the slots are assigned.
func (c *testCluster) waitServing(n *Node, want ...*Node) {
	c.t.Helper()
	c.waitGroup("group led by "+n.ID()+" with all in sync", func(g *coord.Group) bool {
		if g.Primary != n.ID() {
			return false
		}
		for _, m := range want {
			if !slices.Contains(g.ISR, m.ID()) {
				return false
			}
		}
		return true
	})
	eventually(c.t, "primary "+n.ID()+" accepts writes", func() bool {
		return call(c.t, n.Addr(), time.Second, put("ping", "pong"))[0].Code == wire.Code_OK
	})
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, patience, what, cond)
}

func put(key, value string) *wire.Request {
	return &wire.Request{Op: wire.Op_PUT, Key: []byte(key), Value: []byte(value)}
}

func get(key string) *wire.Request { return &wire.Request{Op: wire.Op_GET, Key: []byte(key)} }

// call sends reqs as one batch on a new stream to addr and returns the
// responses in request order; a request not answered within wait gets a
// response with code -1.
func call(t testing.TB, addr string, wait time.Duration, reqs ...*wire.Request) []*wire.Response {
	t.Helper()
	out := make([]*wire.Response, len(reqs))
	for i := range out {
		out[i] = &wire.Response{Code: -1, Message: "no answer"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return out
	}
	conn := drpcconn.New(raw)
	defer conn.Close()
	stream, err := wire.NewDRPCDataClient(conn).Stream(ctx)
	if err != nil {
		return out
	}
	for i, r := range reqs {
		r.Id = uint64(i + 1)
	}
	if err := stream.Send(&wire.Batch{Requests: reqs}); err != nil {
		return out
	}
	for left := len(reqs); left > 0; {
		reply, err := stream.Recv()
		if err != nil {
			return out
		}
		for _, r := range reply.Responses {
			out[r.Id-1] = r
			left--
		}
	}
	return out
}

// pausable is a coordination connection that a test can pause as SIGSTOP
// pauses a process: while paused no call returns and no watch event or
// session end is delivered, and its lease stays what it was when paused.
// It reports leases with a session timeout of its own.
type pausable struct {
	coord.Conn
	timeout time.Duration

	mu     sync.Mutex
	paused bool
	thawed chan struct{}
	lease  coord.SessionLease
}

func newPausable(inner coord.Conn, timeout time.Duration) *pausable {
	return &pausable{Conn: inner, timeout: timeout}
}

func (p *pausable) pause() coord.SessionLease {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lease = p.Conn.Lease()
	p.lease.Timeout = p.timeout
	p.paused, p.thawed = true, make(chan struct{})
	return p.lease
}

func (p *pausable) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		p.paused = false
		close(p.thawed)
	}
}

// wait blocks while paused.
func (p *pausable) wait(ctx context.Context) {
	p.mu.Lock()
	paused, thawed := p.paused, p.thawed
	p.mu.Unlock()
	if paused {
		select {
		case <-thawed:
		case <-ctx.Done():
		}
	}
}

func (p *pausable) Lease() coord.SessionLease {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		return p.lease
	}
	l := p.Conn.Lease()
	l.Timeout = p.timeout
	return l
}

func (p *pausable) SessionDone() <-chan struct{} {
	in, out := p.Conn.SessionDone(), make(chan struct{})
	go func() {
		<-in
		p.wait(context.Background())
		close(out)
	}()
	return out
}

func (p *pausable) Watch(ctx context.Context, path string) (coord.WatchData, <-chan coord.WatchData, error) {
	p.wait(ctx)
	v, in, err := p.Conn.Watch(ctx, path)
	if err != nil {
		return v, nil, err
	}
	return v, relay(ctx, p, in), nil
}

func relay[T any](ctx context.Context, p *pausable, in <-chan T) <-chan T {
	out := make(chan T, 1)
	go func() {
		defer close(out)
		for v := range in {
			p.wait(ctx)
			select {
			case out <- v:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (p *pausable) Get(ctx context.Context, path string) ([]byte, coord.Version, error) {
	p.wait(ctx)
	return p.Conn.Get(ctx, path)
}

func (p *pausable) Update(ctx context.Context, path string, data []byte, v coord.Version) (coord.Version, error) {
	p.wait(ctx)
	return p.Conn.Update(ctx, path, data, v)
}

func (p *pausable) Children(ctx context.Context, path string) ([]string, error) {
	p.wait(ctx)
	return p.Conn.Children(ctx, path)
}

func (p *pausable) CreateEphemeral(ctx context.Context, path string, data []byte) error {
	p.wait(ctx)
	return p.Conn.CreateEphemeral(ctx, path, data)
}

// nodeDir is a data directory for a node of the test.
func nodeDir(t *testing.T, name string) string { return filepath.Join(t.TempDir(), name) }
