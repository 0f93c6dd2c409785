package datanode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"storj.io/drpc/drpcmux"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/ops"
	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/internal/sysproc"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/tlsauth"
)

// Config configures a data node. Cluster, Group, Listen and Dir are required.
type Config struct {
	// Cluster is the cluster's coordination state; the node does not close it.
	Cluster *coord.Cluster
	// Group is the replica group the node joins; a new name makes a new group.
	Group string
	// Listen is the address the Data service binds, e.g. 127.0.0.1:7100.
	Listen string
	// Advertise is the address clients dial; "" → the bound Listen address.
	Advertise string
	// HTTP, when set, serves /metrics, /healthz and /readyz there.
	HTTP string
	// Dir holds the node's id and its data file.
	Dir string
	// MaxValueSize bounds values; 0 → 4 MiB.
	MaxValueSize int
	// Acks says when a write is acknowledged: AcksAll (the zero value) once
	// it is durable on every in-sync replica, AcksOne once it is durable on
	// the primary alone.
	Acks Acks
	// MinInsync is the fewest in-sync replicas (the primary included) with
	// which the primary accepts writes; 0 → 1.
	MinInsync int
	// MaxLag is how long a follower may stay behind before the primary
	// drops it from the in-sync set; 0 → 2s.
	MaxLag time.Duration
	// BusyCopyRate bounds, in bytes of keys and values per second, the
	// snapshot of a migration this node imports or serves while its
	// group's clients write too; 0 → DefaultBusyCopyRate, negative:
	// unbounded. The migration's own rate bounds it as well.
	BusyCopyRate float64
	// Repair rebuilds a store that is refused as damaged from the group
	// instead of failing the start (repair.go); a healthy store opens as
	// usual.
	Repair bool
	// TLS, when set, serves mutual TLS only and dials its group's primary and migration sources with it
	// (docs/security.md); nil: plain TCP.
	TLS *tlsauth.Certs
	// HTTPOptions configure the --http endpoints (pprof, TLS).
	HTTPOptions ops.Options
	// Logger receives the node's events; nil → slog.Default().
	Logger *slog.Logger
}

// Acks is the acknowledgement policy of writes.
type Acks int

const (
	// AcksAll acknowledges a write once every in-sync replica holds it durably.
	AcksAll Acks = iota
	// AcksOne acknowledges a write once the primary holds it durably; a
	// failover may lose it.
	AcksOne
)

// Node is a running data node.
type Node struct {
	cfg   Config
	id    string
	log   *slog.Logger
	slots int
	// replication is the cluster's replication factor: a group whose
	// in-sync set is smaller is under-replicated.
	replication int
	// db is the open store; it is replaced when a failed store is reopened
	// (storefail.go). Read it with store().
	db   atomic.Pointer[datastore.Store]
	lis  net.Listener
	http *ops.Server
	addr string
	// startedAt is in the node's registration, to tell it from others'.
	startedAt time.Time
	// dirLock is the lock on Dir, held from Start until the node stops: it
	// proves that no earlier process of this node still runs here.
	dirLock *datastore.DirLock

	state   atomic.Pointer[state]
	metrics *metrics
	// mig is the node's part in slot migrations (migrate.go).
	mig *migrations
	// dedupe knows the tagged writes in the log, so retries are not
	// written twice (dedupe.go).
	dedupe *dedupe

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ready  chan struct{}
	// roleKick asks manageRole to look at the state again.
	roleKick chan struct{}
	done     chan struct{}
	err      error

	closeOnce sync.Once
}

// state is what the node knows from ZooKeeper — who owns each slot, its
// group — and the role it acts on: primary is set only while this node
// leads its group in the group's current epoch with a live session.
// storeErr is set from the moment the store fails until it is reopened; the
// node serves nothing meanwhile.
type state struct {
	table     *coord.SlotTable
	group     *coord.Group
	sessionOK bool
	primary   *primary
	storeErr  error
}

func (s *state) isPrimary() bool { return s.primary != nil }

// ErrNoCluster: the cluster did not exist in ZooKeeper before the start
// context ended; a coordinator creates it.
var ErrNoCluster = errors.New("datanode: cluster does not exist (start a coordinator first)")

// ErrDirInUse: another running process holds the node's data directory.
var ErrDirInUse = errors.New("data directory is in use by another running data node")

// Start opens the store, binds the listener, registers the node and returns;
// ctx bounds only the start. The node then serves until Close, or until it
// fails (Done closes, Err says why).
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Group == "" || cfg.Listen == "" || cfg.Dir == "" || cfg.Cluster == nil {
		return nil, errors.New("datanode: group, listen address and data directory are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.MinInsync = max(cfg.MinInsync, 1)
	if cfg.MaxLag <= 0 {
		cfg.MaxLag = 2 * time.Second
	}
	if cfg.BusyCopyRate == 0 {
		cfg.BusyCopyRate = DefaultBusyCopyRate
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	id, err := loadOrCreateID(cfg.Dir)
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	n := &Node{cfg: cfg, id: id, log: cfg.Logger.With("node", id, "group", cfg.Group), ready: make(chan struct{}), done: make(chan struct{}), roleKick: make(chan struct{}, 1),
		dedupe: newDedupe(), dirLock: lock}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.mig = newMigrations(n)
	if err := n.start(ctx); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

func (n *Node) start(ctx context.Context) error {
	// Each phase is logged with its time, so a slow start shows where it
	// went.
	began := time.Now()
	last := began
	phase := func(name string) {
		now := time.Now()
		n.log.Info("start phase done", "phase", name, "took", now.Sub(last).Round(time.Millisecond))
		last = now
	}
	meta, err := n.waitForCluster(ctx)
	if err != nil {
		return err
	}
	phase("cluster")
	n.slots, n.replication = meta.Slots, meta.ReplicationFactor
	n.metrics = newMetrics(n)
	watchSession := n.metrics.reg.WatchSession(n.cfg.Cluster.Conn())
	n.wg.Add(1)
	go func() { defer n.wg.Done(); watchSession(n.ctx) }()
	store, err := n.openOrRepair(ctx)
	if err != nil {
		return err
	}
	n.useStore(store)
	phase("store")
	if err := n.cfg.Cluster.EnsureGroup(ctx, n.cfg.Group); err != nil {
		return fmt.Errorf("create group %s: %w", n.cfg.Group, err)
	}
	if err := n.watchCluster(); err != nil {
		return err
	}
	phase("watch")
	n.lis, err = net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", n.cfg.Listen, err)
	}
	n.addr = n.cfg.Advertise
	if n.addr == "" {
		n.addr = n.lis.Addr().String()
	}
	mux := drpcmux.New()
	if err := wire.DRPCRegisterData(mux, &service{n: n}); err != nil {
		return fmt.Errorf("register data service: %w", err)
	}
	sopts := wire.ServerOptions{MaxMessageBytes: wire.DataMessageBytes(n.store().MaxValueSize()), TLS: n.cfg.TLS.ServerConfig(), Logger: n.log}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := wire.Serve(n.ctx, n.lis, mux, sopts); err != nil && n.ctx.Err() == nil {
			// fail waits for this goroutine: run it apart.
			go n.fail(fmt.Errorf("data service stopped: %w", err))
		}
	}()
	if n.cfg.HTTP != "" {
		if n.http, err = ops.Serve(n.cfg.HTTP, n.metrics.reg, n.readyErr, n.log, n.cfg.HTTPOptions); err != nil {
			return err
		}
	}
	phase("listen")
	n.startedAt = time.Now().UTC().Round(0)
	info := coord.NodeInfo{ID: n.id, Group: n.cfg.Group, Addr: n.addr, StartedAt: n.startedAt}
	if info.Host, err = os.Hostname(); err != nil {
		return fmt.Errorf("host name for the registration: %w", err)
	}
	if info.Dir, err = filepath.Abs(n.cfg.Dir); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	info.Boot = sysproc.BootID()
	if n.http != nil {
		info.HTTP = n.http.Addr()
	}
	session := n.cfg.Cluster.Conn().Lease().Session
	if err := n.register(ctx, info); err != nil {
		return err
	}
	phase("register")
	if n.cfg.Cluster.Conn().Lease().Session != session {
		session = 0 // registered in some session: lead finds out which
	}
	// Act on a role only once registered: a restarted primary that led
	// before its old registration expired would be deposed while serving.
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.manageRole(session) }()
	go func() { defer n.wg.Done(); n.mig.run(n.ctx) }()
	close(n.ready)
	n.log.Info("data node started: ready", "addr", n.addr, "dir", n.cfg.Dir, "slots", meta.Slots,
		"took", time.Since(began).Round(time.Millisecond))
	return nil
}

// register announces the node. After a crash the previous process's
// registration lingers until ZooKeeper expires its session. The node holds
// its directory's lock, so that process is gone: a registration naming this
// host and directory is deleted at once (docs/replication.md, "Restarts").
// Any other holder of the node's id is waited out.
func (n *Node) register(ctx context.Context, info coord.NodeInfo) error {
	logged := false
	for {
		err := n.cfg.Cluster.RegisterNode(n.ctx, info)
		if !errors.Is(err, coord.ErrNodeExists) {
			if err != nil {
				return fmt.Errorf("register node: %w", err)
			}
			return nil
		}
		reclaimed, rerr := n.cfg.Cluster.ReclaimNode(ctx, info)
		if reclaimed {
			n.log.Info("deleted the registration of this node's previous process, which is gone (the directory lock is ours)")
			continue
		}
		if !logged {
			n.log.Info("node id registered by another process; waiting for its session to expire", "err", rerr)
			logged = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("register node: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// lockDir creates dir and takes its lock, or says that another process
// holds it.
func lockDir(dir string) (*datastore.DirLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	l, err := datastore.LockDir(dir)
	if errors.Is(err, datastore.ErrLocked) {
		return nil, fmt.Errorf("datanode: %s: %w", dir, ErrDirInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	return l, nil
}

// waitForCluster waits for a coordinator to create the cluster, so data
// nodes and coordinators can start in any order.
func (n *Node) waitForCluster(ctx context.Context) (coord.ClusterMeta, error) {
	logged := false
	for {
		meta, err := n.cfg.Cluster.Meta(ctx)
		if !errors.Is(err, coord.ErrNoCluster) {
			return meta, err
		}
		if !logged {
			n.log.Info("waiting for a coordinator to create the cluster", "cluster", n.cfg.Cluster.Name())
			logged = true
		}
		select {
		case <-ctx.Done():
			return meta, fmt.Errorf("%w: %s", ErrNoCluster, n.cfg.Cluster.Name())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// watchCluster loads the slot table and group state and keeps them current with
// watches, re-watching after every interruption.
func (n *Node) watchCluster() error {
	table, tableCh, err := n.cfg.Cluster.WatchSlotTable(n.ctx)
	if err != nil {
		return fmt.Errorf("watch slot table: %w", err)
	}
	group, groupCh, err := n.cfg.Cluster.WatchGroup(n.ctx, n.cfg.Group)
	if err != nil {
		return fmt.Errorf("watch group %s: %w", n.cfg.Group, err)
	}
	n.state.Store(&state{table: table, group: group, sessionOK: true})
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		keepWatching(n, "slot table", tableCh, n.cfg.Cluster.WatchSlotTable,
			func(s *state, t *coord.SlotTable) { s.table = t })
	}()
	go func() {
		defer n.wg.Done()
		keepWatching(n, "group", groupCh, func(ctx context.Context) (*coord.Group, <-chan *coord.Group, error) {
			return n.cfg.Cluster.WatchGroup(ctx, n.cfg.Group)
		}, func(s *state, g *coord.Group) { s.group = g })
	}()
	return nil
}

// keepWatching applies every value from ch to the node's state; when ch
// closes (the session was lost or interrupted) it watches again, until the
// node stops.
func keepWatching[T any](n *Node, what string, ch <-chan T, watch func(context.Context) (T, <-chan T, error), apply func(*state, T)) {
	for {
		for v := range ch {
			n.update(func(s *state) { apply(s, v) })
		}
		for {
			if n.ctx.Err() != nil {
				return
			}
			v, next, err := watch(n.ctx)
			if err == nil {
				n.update(func(s *state) { apply(s, v) })
				ch = next
				break
			}
			n.log.Warn("watch failed, retrying", "what", what, "err", err)
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// update changes the state copy-on-write, so request handlers read a
// consistent snapshot without locks.
func (n *Node) update(change func(*state)) {
	for {
		old := n.state.Load()
		next := *old
		change(&next)
		if n.state.CompareAndSwap(old, &next) {
			if old.table.Version != next.table.Version {
				n.log.Info("slot table changed", "table_version", next.table.Version)
			}
			n.kickRole()
			n.mig.wake()
			return
		}
	}
}

func epochOf(g *coord.Group) uint64 {
	if g == nil {
		return 0
	}
	return g.Epoch
}

// openStore opens the node's store.
func (n *Node) openStore() (*datastore.Store, error) {
	s, err := datastore.Open(n.storeDir(), datastore.Options{
		Slots: n.slots, MaxValueSize: n.cfg.MaxValueSize, Logger: n.log, Observer: n.metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// storeDir holds the store's files, next to the node's id in Dir.
func (n *Node) storeDir() string { return filepath.Join(n.cfg.Dir, "store") }

// store is the node's current store.
func (n *Node) store() *datastore.Store { return n.db.Load() }

// readyErr is /readyz: nil while the node serves its role, the primary
// of its group or an in-sync secondary; a secondary still catching up, or
// out of the in-sync set, is not ready.
func (n *Node) readyErr() error {
	select {
	case <-n.ready:
	default:
		return errors.New("starting")
	}
	st := n.state.Load()
	if s := storeState(st); s != "" {
		return errors.New(s)
	}
	if st.isPrimary() {
		return nil
	}
	if st.group == nil || !slices.Contains(st.group.ISR, n.id) {
		return fmt.Errorf("not in sync with the primary of group %s yet", n.cfg.Group)
	}
	return nil
}

// ID is the node's stable id.
func (n *Node) ID() string { return n.id }

// Addr is the address clients dial.
func (n *Node) Addr() string { return n.addr }

// HTTPAddr is the bound address of the HTTP endpoints; "" without them.
func (n *Node) HTTPAddr() string {
	if n.http == nil {
		return ""
	}
	return n.http.Addr()
}

// Done is closed when the node stops on its own; Err then says why.
func (n *Node) Done() <-chan struct{} { return n.done }

// Err is why the node stopped on its own, or nil.
func (n *Node) Err() error {
	select {
	case <-n.done:
		return n.err
	default:
		return nil
	}
}

func (n *Node) fail(err error) {
	n.closeOnce.Do(func() {
		n.err = err
		n.log.Error("data node failed", "err", err)
		n.shutdown()
	})
}

// Close stops the node. A primary first hands its role to the most
// caught-up in-sync member (a graceful switchover, bounded to a few
// seconds). Then it deregisters (the ephemeral znode goes with the
// registration's context), stops accepting requests, waits for requests in
// flight and their commits, and closes the store. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if st := n.state.Load(); st != nil && st.primary != nil && n.ctx.Err() == nil {
			p := st.primary
			ctx, cancel := context.WithTimeout(n.ctx, 6*time.Second)
			if _, err := p.handover(ctx, "", true); err != nil {
				n.log.Info("no handover before shutdown", "reason", err)
			}
			cancel()
		}
		n.shutdown()
	})
	return n.err
}

func (n *Node) shutdown() {
	n.cancel()
	if n.lis != nil {
		_ = n.lis.Close()
	}
	n.wg.Wait()
	if n.http != nil {
		_ = n.http.Close()
	}
	if s := n.store(); s != nil {
		if err := s.Close(); err != nil && n.err == nil {
			n.err = err
		}
	}
	_ = n.dirLock.Close()
	close(n.done)
	n.log.Info("data node stopped")
}

// loadOrCreateID returns the node id kept in dir, making one on first start
// so the node keeps its identity across restarts.
func loadOrCreateID(dir string) (string, error) {
	path := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read node id: %w", err)
	}
	var raw [4]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	id := "n-" + hex.EncodeToString(raw[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write node id: %w", err)
	}
	if err := syncRename(tmp, path); err != nil {
		return "", fmt.Errorf("write node id: %w", err)
	}
	return id, nil
}

// syncRename renames tmp over path and fsyncs the directory, so the id
// survives a crash right after it was chosen.
func syncRename(tmp, path string) error {
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// dialOptions are how the node dials its peers: the primary it follows,
// the source of a migration.
func (n *Node) dialOptions() wire.DialOptions {
	return wire.DialOptions{TLS: n.cfg.TLS.ClientConfig()}
}
