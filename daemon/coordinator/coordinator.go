package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"storj.io/drpc/drpcmux"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon"
	"github.com/thunderyurts/thunderyurts/daemon/ops"
	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/routewire"
	"github.com/thunderyurts/thunderyurts/wire/tlsauth"
)

// Config configures a coordinator. Cluster, Listen and NodeStatus are required.
type Config struct {
	// Cluster is the cluster's coordination state; the coordinator does not close it.
	Cluster *coord.Cluster
	// ID names this coordinator in the election; "" → its advertised address.
	ID string
	// Listen is where the routing service binds, e.g. 127.0.0.1:7000.
	Listen string
	// HTTP, when set, serves /metrics, /healthz and /readyz there.
	HTTP string
	// Slots and ReplicationFactor are used only if this coordinator creates
	// the cluster; 0 → 1024 and 3.
	Slots, ReplicationFactor int
	// AssignDelay is how long the leader waits after the first data node of
	// a new cluster registers before spreading the slots, so nodes started
	// together all get a share; 0 → 2s.
	AssignDelay time.Duration
	// NodeStatus asks the data node at addr for its log position (the
	// Data.Status call); failover compares the in-sync members' answers.
	// Injected so tests can run the coordinator without a network.
	NodeStatus func(ctx context.Context, addr string) (*wire.NodeStatus, error)
	// Backups runs the cluster's backup schedule while this coordinator
	// leads; nil: no scheduled backups. Injected so the coordinator needs
	// neither the client nor the backup code.
	Backups Backups
	// TLS, when set, serves mutual TLS only
	// (docs/security.md); nil: plain TCP.
	TLS *tlsauth.Certs
	// HTTPOptions configure the --http endpoints (pprof, TLS).
	HTTPOptions ops.Options
	// Logger receives the coordinator's events; nil → slog.Default().
	Logger *slog.Logger

	// The slot migration driver's settings (docs/migration.md), 0 → default.
	// MigrationPoll: how often it asks the primaries for their reports
	// while a migration is in flight (100ms). HoldTimeout: a hold still in
	// place after this long is released (1.5s; the source releases its own
	// after 1s). CopyStall: a copy that makes no progress for this long is
	// aborted (30s). RetryDelay: an aborted move starts again after this
	// long (5s). MigrationsPerGroup: migrations in flight per source and
	// per target group (1).
	MigrationPoll, HoldTimeout, CopyStall, RetryDelay time.Duration
	MigrationsPerGroup                                int
}

// Backups runs scheduled backups (docs/backups.md).
type Backups interface {
	// Run runs the schedule until ctx, the leadership, ends; id names this
	// coordinator in the runs it claims.
	Run(ctx context.Context, id string)
	// LastRuns are the newest finished scheduled run and the newest
	// successful one this process knows of; zero values when none.
	LastRuns() (last, lastOK coord.BackupRun)
}

// Coordinator is a running coordinator.
type Coordinator struct {
	cfg     Config
	log     *slog.Logger
	lis     net.Listener
	http    *ops.Server
	addr    string
	leading atomic.Bool
	metrics *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}
	once   sync.Once
	err    error // why it stopped on its own; set before done closes
}

var _ daemon.Daemon = (*Coordinator)(nil)

// Start creates the cluster if it does not exist, binds the routing
// service and joins the leader election; ctx bounds only the start. The
// coordinator then runs until Close, or until its routing service fails
// (Done closes, Err says why).
func Start(ctx context.Context, cfg Config) (*Coordinator, error) {
	if cfg.Cluster == nil || cfg.Listen == "" || cfg.NodeStatus == nil {
		return nil, errors.New("coordinator: cluster, listen address and node status probe are required")
	}
	if cfg.Slots <= 0 {
		cfg.Slots = 1024
	}
	if cfg.ReplicationFactor <= 0 {
		cfg.ReplicationFactor = 3
	}
	if cfg.AssignDelay <= 0 {
		cfg.AssignDelay = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.MigrationPoll = cmp.Or(cfg.MigrationPoll, defaultMigrationPoll)
	cfg.HoldTimeout = cmp.Or(cfg.HoldTimeout, defaultHoldTimeout)
	cfg.CopyStall = cmp.Or(cfg.CopyStall, defaultCopyStall)
	cfg.RetryDelay = cmp.Or(cfg.RetryDelay, defaultRetryDelay)
	cfg.MigrationsPerGroup = cmp.Or(cfg.MigrationsPerGroup, 1)
	c := &Coordinator{cfg: cfg, log: cfg.Logger, done: make(chan struct{}), metrics: newMetrics()}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if err := c.start(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Coordinator) start(ctx context.Context) error {
	created, err := c.cfg.Cluster.CreateIfMissing(ctx, coord.ClusterMeta{
		Name: c.cfg.Cluster.Name(), Slots: c.cfg.Slots, ReplicationFactor: c.cfg.ReplicationFactor, CreatedAt: time.Now().UTC(),
	})
	if err != nil {
		return fmt.Errorf("create cluster %s: %w", c.cfg.Cluster.Name(), err)
	}
	meta, err := c.cfg.Cluster.Meta(ctx)
	if err != nil {
		return err
	}
	if created {
		c.log.Info("cluster created", "cluster", meta.Name, "slots", meta.Slots, "replication_factor", meta.ReplicationFactor)
	} else if meta.Slots != c.cfg.Slots {
		c.log.Info("joining existing cluster; its slot count is fixed", "cluster", meta.Name, "slots", meta.Slots)
	}
	if c.lis, err = net.Listen("tcp", c.cfg.Listen); err != nil {
		return fmt.Errorf("listen %s: %w", c.cfg.Listen, err)
	}
	c.addr = c.lis.Addr().String()
	if c.cfg.ID == "" {
		c.cfg.ID = c.addr
	}
	c.log = c.log.With("coordinator", c.cfg.ID)
	mux := drpcmux.New()
	if err := wire.DRPCRegisterRoute(mux, &routeService{cluster: c.cfg.Cluster}); err != nil {
		return fmt.Errorf("register route service: %w", err)
	}
	// Calls here are small: a route request is empty.
	sopts := wire.ServerOptions{MaxMessageBytes: 1 << 20, TLS: c.cfg.TLS.ServerConfig(), Logger: c.log}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := wire.Serve(c.ctx, c.lis, mux, sopts); err != nil && c.ctx.Err() == nil {
			// fail waits for this goroutine: run it apart.
			go c.fail(fmt.Errorf("route service stopped: %w", err))
		}
	}()
	c.registerGauges()
	watchSession := c.metrics.reg.WatchSession(c.cfg.Cluster.Conn())
	c.wg.Add(1)
	go func() { defer c.wg.Done(); watchSession(c.ctx) }()
	if c.cfg.HTTP != "" {
		if c.http, err = ops.Serve(c.cfg.HTTP, c.metrics.reg, func() error { return nil }, c.log, c.cfg.HTTPOptions); err != nil {
			return err
		}
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.campaign() }()
	c.log.Info("coordinator started", "addr", c.addr, "cluster", meta.Name)
	return nil
}

// campaign runs for leadership until the coordinator stops, leading
// whenever it wins.
func (c *Coordinator) campaign() {
	info := coord.CoordinatorInfo{ID: c.cfg.ID, Addr: c.addr}
	if c.http != nil {
		info.HTTP = c.http.Addr()
	}
	for c.ctx.Err() == nil {
		cand, err := c.cfg.Cluster.CampaignCoordinator(c.ctx, info)
		if err != nil {
			c.log.Warn("campaign failed, retrying", "err", err)
			_ = clock.Sleep(c.ctx, time.Second)
			continue
		}
		leaderCtx, err := cand.WaitForLeadership(c.ctx)
		if err != nil {
			if c.ctx.Err() == nil {
				c.log.Warn("election interrupted, campaigning again", "err", err)
			}
			c.resign(cand)
			_ = clock.Sleep(c.ctx, 200*time.Millisecond)
			continue
		}
		c.leading.Store(true)
		c.metrics.elected.Inc()
		c.log.Info("became leader")
		c.lead(leaderCtx)
		c.leading.Store(false)
		c.log.Info("stopped leading", "cause", context.Cause(leaderCtx))
		c.resign(cand)
	}
}

func (c *Coordinator) resign(cand *coord.Candidate) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = cand.Resign(ctx)
}

// Leading reports whether this coordinator is the leader now.
func (c *Coordinator) Leading() bool { return c.leading.Load() }

// Addr is the routing service's bound address.
func (c *Coordinator) Addr() string { return c.addr }

// HTTPAddr is the bound address of the HTTP endpoints; "" without them.
func (c *Coordinator) HTTPAddr() string {
	if c.http == nil {
		return ""
	}
	return c.http.Addr()
}

// Done is closed when the coordinator has stopped, on its own or by Close.
func (c *Coordinator) Done() <-chan struct{} { return c.done }

// Err is why the coordinator stopped on its own, or nil.
func (c *Coordinator) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// fail stops the coordinator because a part of it stopped working: a
// coordinator that cannot answer routes must not look alive to its
// supervisor.
func (c *Coordinator) fail(err error) {
	c.once.Do(func() {
		c.err = err
		c.log.Error("coordinator failed", "err", err)
		c.shutdown()
	})
}

// Close stops leading (cancelling the leader's work), leaves the election,
// stops the routing service and waits for all of it. It is idempotent and
// returns the failure that stopped the coordinator, if one did.
func (c *Coordinator) Close() error {
	c.once.Do(c.shutdown)
	return c.err
}

func (c *Coordinator) shutdown() {
	c.cancel()
	if c.lis != nil {
		_ = c.lis.Close()
	}
	c.wg.Wait()
	if c.http != nil {
		_ = c.http.Close()
	}
	close(c.done)
	c.log.Info("coordinator stopped")
}

// routeService answers GetRoutes from ZooKeeper, so standbys answer too.
type routeService struct {
	wire.DRPCRouteUnimplementedServer
	cluster *coord.Cluster
}

func (r *routeService) GetRoutes(ctx context.Context, _ *wire.RoutesRequest) (*wire.Routes, error) {
	rt, err := r.cluster.Routes(ctx)
	if err != nil {
		return nil, fmt.Errorf("read routes: %w", err)
	}
	return routewire.FromTable(rt), nil
}
