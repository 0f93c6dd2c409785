package clustertest

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/memcoord"
	"github.com/thunderyurts/thunderyurts/daemon"
	"github.com/thunderyurts/thunderyurts/daemon/coordinator"
	"github.com/thunderyurts/thunderyurts/daemon/datanode"
	"github.com/thunderyurts/thunderyurts/daemon/procs"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

var (
	_ daemon.Daemon = (*coordinator.Coordinator)(nil)
	_ daemon.Daemon = (*datanode.Node)(nil)
)

// waitFor bounds every wait of the harness; generous, for a loaded machine.
const waitFor = 30 * time.Second

// Options configures a Cluster; the zero value is a small, fast cluster.
type Options struct {
	// Slots and ReplicationFactor of the cluster; 0 → 16 and 3.
	Slots, ReplicationFactor int
	// AssignDelay is the coordinators' wait before spreading slots; 0 → 50ms.
	AssignDelay time.Duration
	// MaxLag, MinInsync and Acks configure every data node; MaxLag 0 → 1s.
	MaxLag    time.Duration
	MinInsync int
	Acks      datanode.Acks
	// Backups, when set, gives each coordinator its scheduled backups,
	// over that coordinator's own session.
	Backups func(*coord.Cluster) coordinator.Backups
	// HTTP serves every daemon's HTTP endpoints on a loopback port (see
	// HTTPAddr).
	HTTP bool
}

// Cluster is a running in-process cluster. Its methods fail the test
// (t.Fatal) on error, so they must be called from the test's goroutine.
type Cluster struct {
	t    testing.TB
	opts Options
	name string
	srv  *memcoord.Server
	dir  string
	logs *logBuffer
	log  *slog.Logger
	// observer is the test's own session, never faulted.
	observer *coord.Cluster

	mu      sync.Mutex
	members map[string]*member
	proxies map[[2]string]*proxy // by viewer, target member
	// lingering are the sessions of crashed members, alive until the end.
	lingering []*memcoord.Conn
	cut       map[pair]bool
}

// member is one coordinator, data node or client of the cluster.
type member struct {
	name   string
	group  string // data nodes only
	dir    string // data nodes only
	addr   string // data nodes only: the real listen address, kept across restarts
	client bool
	conn   *memcoord.Conn
	coord  *coordinator.Coordinator
	node   *datanode.Node
}

func (m *member) daemon() daemon.Daemon {
	switch {
	case m.coord != nil:
		return m.coord
	case m.node != nil:
		return m.node
	}
	return nil
}

// New starts an empty cluster (no members yet); t.Cleanup stops it.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Slots <= 0 {
		opts.Slots = 16
	}
	if opts.ReplicationFactor <= 0 {
		opts.ReplicationFactor = 3
	}
	if opts.AssignDelay <= 0 {
		opts.AssignDelay = 50 * time.Millisecond
	}
	if opts.MaxLag <= 0 {
		opts.MaxLag = time.Second
	}
	c := &Cluster{t: t, opts: opts, name: "test", srv: memcoord.New(), dir: t.TempDir(), logs: &logBuffer{},
		members: map[string]*member{}, proxies: map[[2]string]*proxy{}, cut: map[pair]bool{}}
	c.log = slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	observer := c.srv.Connect()
	c.observer = coord.NewCluster(observer, c.name)
	t.Cleanup(func() {
		c.stopAll()
		observer.Close()
		if t.Failed() {
			t.Logf("--- cluster log ---\n%s", c.logs.tail(200))
		}
	})
	return c
}

// connect gives member name a new session whose view of data node
// addresses goes through that member's proxies.
func (c *Cluster) connect(name string) (*memcoord.Conn, *coord.Cluster) {
	conn := c.srv.Connect()
	return conn, coord.NewCluster(&view{Conn: conn, c: c, viewer: name}, c.name).WithLogger(c.log)
}

// StartCoordinator starts a coordinator named name.
func (c *Cluster) StartCoordinator(name string) *coordinator.Coordinator {
	c.t.Helper()
	m := &member{name: name}
	c.add(m)
	c.start(m)
	return m.coord
}

// StartNode starts a data node named name in group.
func (c *Cluster) StartNode(name, group string) *datanode.Node {
	c.t.Helper()
	// The node binds the port itself; a restart binds it again, so the
	// address the cluster knows stays the same.
	addr, err := procs.FreeAddr()
	if err != nil {
		c.t.Fatal(err)
	}
	m := &member{name: name, group: group, dir: filepath.Join(c.dir, name), addr: addr}
	c.add(m)
	c.start(m)
	return m.node
}

// start runs m's coordinator or data node on a new session.
func (c *Cluster) start(m *member) {
	c.t.Helper()
	if err := c.tryStart(m, nil); err != nil {
		c.t.Fatalf("start %s: %v", m.name, err)
	}
}

// tryStart is start returning the error; change, if set, adjusts a data
// node's configuration.
func (c *Cluster) tryStart(m *member, change func(*datanode.Config)) error {
	conn, cl := c.connect(m.name)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	log := c.log.With("member", m.name)
	var (
		co  *coordinator.Coordinator
		n   *datanode.Node
		err error
	)
	if m.dir == "" {
		cfg := coordinator.Config{
			Cluster: cl, ID: m.name, Listen: "127.0.0.1:0", Slots: c.opts.Slots, ReplicationFactor: c.opts.ReplicationFactor,
			AssignDelay: c.opts.AssignDelay, NodeStatus: nodeclient.Nodes{}.NodeStatus, Logger: log, HTTP: c.httpAddr(),
		}
		if c.opts.Backups != nil {
			cfg.Backups = c.opts.Backups(cl)
		}
		co, err = coordinator.Start(ctx, cfg)
	} else {
		cfg := datanode.Config{
			Cluster: cl, Group: m.group, Listen: m.addr, Dir: m.dir, Logger: log,
			Acks: c.opts.Acks, MinInsync: c.opts.MinInsync, MaxLag: c.opts.MaxLag, HTTP: c.httpAddr(),
		}
		if change != nil {
			change(&cfg)
		}
		n, err = datanode.Start(ctx, cfg)
	}
	if err != nil {
		conn.Close()
		return err
	}
	c.mu.Lock()
	m.conn, m.coord, m.node = conn, co, n
	c.mu.Unlock()
	return nil
}

func (c *Cluster) add(m *member) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.members[m.name]; ok {
		c.t.Fatalf("clustertest: member %s exists", m.name)
	}
	c.members[m.name] = m
}

func (c *Cluster) member(name string) *member {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.members[name]
	if !ok || m.conn == nil {
		c.t.Fatalf("clustertest: no running member %s", name)
	}
	return m
}

// Node returns the running data node named name.
func (c *Cluster) Node(name string) *datanode.Node { return c.member(name).node }

// NameOf returns the name of the data node with id (which it keeps in its
// directory across restarts).
func (c *Cluster) NameOf(id string) string {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.node != nil && m.node.ID() == id {
			return m.name
		}
	}
	c.t.Fatalf("clustertest: no data node has id %s", id)
	return ""
}

// Coord is the test's own view of the cluster state, on a session that no
// fault touches.
func (c *Cluster) Coord() *coord.Cluster { return c.observer }

// Client returns the cluster's client (one per cluster), itself the member
// "client" so it can be partitioned from nodes; t.Cleanup closes it.
func (c *Cluster) Client() *client.Client {
	c.t.Helper()
	const name = "client"
	m := &member{name: name, client: true}
	c.add(m)
	conn, cl := c.connect(name)
	c.mu.Lock()
	m.conn = conn
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cli, err := client.New(ctx, cl, client.Options{Timeout: 10 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// ExpireSession expires the member's session, as the service does after
// the session timeout; the member continues on a new one.
func (c *Cluster) ExpireSession(name string) { c.member(name).conn.ExpireSession() }

// Disconnect cuts the member off the coordination service; its session
// stays alive (its znodes stay) until ExpireSession or Reconnect.
func (c *Cluster) Disconnect(name string) { c.member(name).conn.SetUnavailable(true) }

// Reconnect ends a Disconnect.
func (c *Cluster) Reconnect(name string) { c.member(name).conn.SetUnavailable(false) }

// Kill stops the member abruptly: it is cut off the coordination service
// first, so a data node hands nothing over (its role ends as on a lost
// session) and its directory stays; then its session ends. Restart brings
// it back.
func (c *Cluster) Kill(name string) {
	c.t.Helper()
	c.stop(name, stopKill)
}

// Crash stops the member as a SIGKILL does: like Kill, except that its
// session outlives it (the service has not noticed the death yet), so its
// registration stays until the member's next start deals with it.
func (c *Cluster) Crash(name string) {
	c.t.Helper()
	c.stop(name, stopCrash)
}

// Stop stops the member gracefully (a primary hands over first).
func (c *Cluster) Stop(name string) {
	c.t.Helper()
	c.stop(name, stopGraceful)
}

type stopMode int

const (
	stopGraceful stopMode = iota
	stopKill
	stopCrash
)

func (c *Cluster) stop(name string, mode stopMode) {
	c.t.Helper()
	m := c.member(name)
	if mode != stopGraceful {
		m.conn.SetUnavailable(true)
		if m.node != nil {
			// Close would hand a primary role over: let the node see its
			// session in doubt and drop the role first.
			c.Eventually(name+" drops its role", func(ctx context.Context) bool {
				st, err := nodeclient.Nodes{}.NodeStatus(ctx, m.addr)
				return err == nil && st.Role != "primary"
			})
		}
	}
	if d := m.daemon(); d != nil {
		if err := d.Close(); err != nil && mode == stopGraceful {
			c.t.Errorf("stop %s: %v", name, err)
		}
	}
	c.mu.Lock()
	if mode == stopCrash {
		c.lingering = append(c.lingering, m.conn)
	} else {
		m.conn.Close()
	}
	m.conn, m.coord, m.node = nil, nil, nil
	c.mu.Unlock()
}

// Restart starts a killed or stopped coordinator or data node again.
func (c *Cluster) Restart(name string) {
	c.t.Helper()
	if err := c.RestartWith(name, nil); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
}

// RestartWith restarts a killed or stopped data node with its
// configuration adjusted by change, and returns the error of its start.
func (c *Cluster) RestartWith(name string, change func(*datanode.Config)) error {
	c.t.Helper()
	c.mu.Lock()
	m, ok := c.members[name]
	c.mu.Unlock()
	switch {
	case !ok:
		c.t.Fatalf("clustertest: no member %s", name)
	case m.conn != nil:
		c.t.Fatalf("clustertest: %s is running", name)
	case m.client:
		c.t.Fatalf("clustertest: the client is not restarted; make a new cluster")
	}
	return c.tryStart(m, change)
}

func (c *Cluster) httpAddr() string {
	if c.opts.HTTP {
		return "127.0.0.1:0"
	}
	return ""
}

// HTTPAddr is the address of a running member's HTTP endpoints (Options.HTTP).
func (c *Cluster) HTTPAddr(name string) string {
	c.t.Helper()
	m := c.member(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case m.coord != nil:
		return m.coord.HTTPAddr()
	case m.node != nil:
		return m.node.HTTPAddr()
	}
	c.t.Fatalf("clustertest: %s is not running", name)
	return ""
}

// Dir is data node name's data directory (its store is in Dir/store).
func (c *Cluster) Dir(name string) string {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.members[name]
	if !ok || m.dir == "" {
		c.t.Fatalf("clustertest: no data node %s", name)
	}
	return m.dir
}

// Partition makes dRPC between members a and b (one of them a data node)
// a black hole until Heal: connections hang, requests time out.
func (c *Cluster) Partition(a, b string) { c.setCut(a, b, true) }

// Heal ends a Partition.
func (c *Cluster) Heal(a, b string) { c.setCut(a, b, false) }

func (c *Cluster) setCut(a, b string, cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut[pairOf(a, b)] = cut
	for _, p := range c.proxies {
		if p.link == pairOf(a, b) {
			p.setCut(cut)
		}
	}
}

// route returns the address member viewer dials to reach the data node
// listening on addr: a proxy of their own, or addr itself for anything
// else.
func (c *Cluster) route(viewer, addr string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var target *member
	for _, m := range c.members {
		if m.addr == addr {
			target = m
		}
	}
	if target == nil || target.name == viewer {
		return addr
	}
	key := [2]string{viewer, target.name}
	if p, ok := c.proxies[key]; ok {
		return p.addr()
	}
	p, err := newProxy(addr, pairOf(viewer, target.name))
	if err != nil {
		return addr
	}
	p.setCut(c.cut[p.link])
	c.proxies[key] = p
	return p.addr()
}

// stopAll stops every member abruptly, then the proxies.
func (c *Cluster) stopAll() {
	c.mu.Lock()
	var running []string
	for name, m := range c.members {
		if m.conn != nil {
			running = append(running, name)
		}
	}
	c.mu.Unlock()
	for _, name := range running {
		c.Kill(name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.proxies {
		p.close()
	}
	for _, conn := range c.lingering {
		conn.Close()
	}
}

// logBuffer keeps the cluster's log for a failing test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) tail(lines int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	parts := strings.Split(b.buf.String(), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
