package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/backup"
	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon"
	"github.com/thunderyurts/thunderyurts/daemon/coordinator"
	"github.com/thunderyurts/thunderyurts/daemon/datanode"
	"github.com/thunderyurts/thunderyurts/daemon/ops"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
	"github.com/thunderyurts/thunderyurts/wire/tlsauth"
)

// shutdownGrace bounds a graceful stop before the process gives up waiting.
const shutdownGrace = 15 * time.Second

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run a daemon: coord or data",
		Subcommands: []*cli.Command{
			{
				Name:  "coord",
				Usage: "run a coordinator (the first one creates the cluster)",
				Flags: append(daemonFlags("127.0.0.1:7000"),
					intFlag("slots", 1024, 1, maxSlots, "`N` slots in a new cluster (fixed once created)"),
					intFlag("replication-factor", 3, 1, maxReplicas, "`N` nodes each group should have"),
					durationFlag("assign-delay", 2*time.Second, 0, time.Hour, "wait `DURATION` after the first data node of a new cluster before spreading slots"),
				),
				Action: serveCoord,
			},
			{
				Name:  "data",
				Usage: "run a data node of group --group",
				Flags: append(daemonFlags("127.0.0.1:7100"),
					requiredFlag("group", "replica group `NAME` to join (a new name makes a new group)", checkGroup),
					requiredFlag("dir", "data `PATH` (node id and data file)", nonEmpty),
					stringFlag("advertise", "", "address `HOST:PORT` clients dial, when it differs from --listen", checkOptionalAddr),
					intFlag("max-value-size", 4<<20, 1, client.MaxValueSize, "largest value accepted, in `BYTES`"),
					stringFlag("acks", "all", "`ACKS`: acknowledge a write once durable on every in-sync replica (all) or on the primary alone (1)", checkAcks),
					intFlag("min-insync", 1, 1, maxReplicas, "`N`: refuse writes while fewer in-sync replicas (primary included) remain"),
					durationFlag("max-lag", 2*time.Second, time.Millisecond, time.Hour, "drop a follower from the in-sync set after it has been behind for `DURATION`"),
					intFlag("migrate-busy-rate", int(datanode.DefaultBusyCopyRate/1e6), 0, 1_000_000, "bound a migration's snapshot copy into or out of this node's group to `MB/s` while the group's clients write "+
						"(0 = unbounded); admin rebalance --rate bounds it as well"),
					boolFlag("repair", "if the store is refused as damaged, set its files aside and rebuild it from the group's primary"),
					stringFlag("memory-limit", "1GiB", "soft limit of the process's memory (Go's GOMEMLIMIT): the garbage collector works harder near it; "+
						"`SIZE` in B, KiB, MiB or GiB, 0 for none (the GOMEMLIMIT environment variable counts when the flag is not given)", checkMemoryLimit),
				),
				Action: serveData,
			},
		},
	}
}

func daemonFlags(listen string) []cli.Flag {
	return append(append(zkFlags(), tlsFlags()...),
		stringFlag("listen", listen, "`HOST:PORT` to serve on", checkAddr),
		stringFlag("http", "", "`HOST:PORT` for /metrics, /healthz and /readyz", checkOptionalAddr),
		boolFlag("enable-pprof", "also serve Go profiles under /debug/pprof/ on --http (they show memory contents)"),
		boolFlag("http-tls", "serve --http over mutual TLS with the --tls-* certificates (default: plain HTTP)"),
		durationFlag("session-timeout", 6*time.Second, time.Second, time.Minute, "ZooKeeper session timeout `DURATION`"),
	)
}

// Bounds of the cluster's shape: a slot is a bucket on every node of its
// group, a replica a stream from the primary.
const (
	maxSlots    = 16384
	maxReplicas = 16
)

// certsPoll is how often a daemon checks its --tls-* files for changes.
const certsPoll = 5 * time.Second

// daemonEnv is what every daemon is started with.
type daemonEnv struct {
	log     *slog.Logger
	cluster *coord.Cluster
	certs   *tlsauth.Certs // nil: plain TCP
	http    ops.Options
}

// runDaemon starts a daemon and serves until it stops or a signal comes: the
// first SIGTERM/SIGINT stops it gracefully, a second exits at once. SIGHUP
// reloads the --tls-* files.
func runDaemon(c *cli.Context, start func(ctx context.Context, env daemonEnv) (daemon.Daemon, error)) error {
	log := startLogger(c)
	certs, err := tlsCerts(c)
	if err != nil {
		return err
	}
	httpOpts := ops.Options{Pprof: c.Bool("enable-pprof")}
	if c.Bool("http-tls") {
		if certs == nil {
			return usageIn(c, "--http-tls needs --tls-cert, --tls-key and --tls-ca")
		}
		httpOpts.TLS = certs.ServerConfig()
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	if certs != nil {
		stopReload := reloadCerts(ctx, certs, log)
		defer stopReload()
	}
	cluster, closeConn, err := clusterConn(ctx, c, log, c.Duration("session-timeout"), false)
	if err != nil {
		return err
	}
	defer closeConn()
	d, err := start(ctx, daemonEnv{log: log, cluster: cluster, certs: certs, http: httpOpts})
	if err != nil {
		return err
	}
	select {
	case <-d.Done():
		return d.Err()
	case <-ctx.Done():
	}
	log.Info("shutting down; a second signal exits at once")
	stopped := make(chan error, 1)
	go func() { stopped <- d.Close() }()
	select {
	case err := <-stopped:
		return err
	case <-sigs:
		return fmt.Errorf("second signal: exiting without finishing shutdown")
	case <-time.After(shutdownGrace):
		return fmt.Errorf("shutdown did not finish within %s", shutdownGrace)
	}
}

// reloadCerts reloads certs on SIGHUP and when their files change, until
// ctx ends or the returned stop is called.
func reloadCerts(ctx context.Context, certs *tlsauth.Certs, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); certs.Watch(ctx, certsPoll, log) }()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-hup:
				if err := certs.Reload(); err != nil {
					log.Error("SIGHUP: TLS files do not load; keeping the old ones", "err", err)
				} else {
					log.Info("SIGHUP: TLS files reloaded; new connections use them", "serial", certs.Serial())
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { signal.Stop(hup); cancel(); wg.Wait() }
}

// startLogger is the logger of a long-running command, which first says
// what runs: the command and the build.
func startLogger(c *cli.Context) *slog.Logger {
	log := newLogger(c, slog.LevelInfo)
	b := readBuildInfo()
	log.Info("starting "+commandPath(c), "version", b.Version, "commit", b.Commit, "date", b.Date, "modified", b.Modified)
	return log
}

func serveCoord(c *cli.Context) error {
	return runDaemon(c, func(ctx context.Context, env daemonEnv) (daemon.Daemon, error) {
		tlsConf := env.certs.ClientConfig()
		nodes := nodeclient.Nodes{TLS: tlsConf}
		return coordinator.Start(ctx, coordinator.Config{
			Cluster: env.cluster, Listen: c.String("listen"), HTTP: c.String("http"),
			Slots: c.Int("slots"), ReplicationFactor: c.Int("replication-factor"),
			AssignDelay: c.Duration("assign-delay"), NodeStatus: nodes.NodeStatus, Logger: env.log,
			Backups: backup.NewScheduler(env.cluster, readBuildInfo().Version, tlsConf, env.log),
			TLS:     env.certs, HTTPOptions: env.http,
		})
	})
}

func parseAcks(s string) (datanode.Acks, error) {
	switch s {
	case "all":
		return datanode.AcksAll, nil
	case "1":
		return datanode.AcksOne, nil
	}
	return 0, errors.New("want all or 1")
}

func checkAcks(s string) error {
	_, err := parseAcks(s)
	return err
}

// parseMemoryLimit reads a size as GOMEMLIMIT spells it: a count of bytes
// with an optional unit B, KiB, MiB or GiB.
func parseMemoryLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, errors.New("want a size such as 512MiB or 2GiB, or 0 for none")
	}
	return n * mult, nil
}

func checkMemoryLimit(s string) error {
	_, err := parseMemoryLimit(s)
	return err
}

// setMemoryLimit applies --memory-limit. A data node's live heap is
// bounded (apply rounds and the unapplied log by bytes); the limit keeps
// the collector's headroom above it (GOGC lets the heap grow to twice the
// live heap) within the limit too.
func setMemoryLimit(c *cli.Context, log *slog.Logger) {
	if !c.IsSet("memory-limit") && os.Getenv("GOMEMLIMIT") != "" {
		return // the runtime read it already
	}
	limit, _ := parseMemoryLimit(c.String("memory-limit")) // checked by the flag
	if limit == 0 {
		limit = math.MaxInt64
	}
	debug.SetMemoryLimit(limit)
	log.Info("memory limit", "bytes", limit)
}

func serveData(c *cli.Context) error {
	acks, _ := parseAcks(c.String("acks")) // checked by the flag
	return runDaemon(c, func(ctx context.Context, env daemonEnv) (daemon.Daemon, error) {
		setMemoryLimit(c, env.log)
		// A data node started before any coordinator waits for the cluster
		// to be created, bounded so a typo in --cluster does not hang forever.
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		return datanode.Start(sctx, datanode.Config{
			Cluster: env.cluster, Group: c.String("group"), Listen: c.String("listen"), Advertise: c.String("advertise"),
			HTTP: c.String("http"), Dir: c.String("dir"), MaxValueSize: c.Int("max-value-size"), Logger: env.log,
			Acks: acks, MinInsync: c.Int("min-insync"), MaxLag: c.Duration("max-lag"), Repair: c.Bool("repair"),
			BusyCopyRate: busyCopyRate(c.Int("migrate-busy-rate")), TLS: env.certs, HTTPOptions: env.http,
		})
	})
}

// busyCopyRate turns --migrate-busy-rate (MB/s, 0 unbounded) into
// datanode.Config.BusyCopyRate (bytes/s, negative unbounded).
func busyCopyRate(mbps int) float64 {
	if mbps == 0 {
		return -1
	}
	return float64(mbps) * 1e6
}
