package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon"
	"github.com/thunderyurts/thunderyurts/daemon/coordinator"
	"github.com/thunderyurts/thunderyurts/daemon/datanode"
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
					&cli.IntFlag{Name: "slots", Value: 1024, Usage: "slot count of a new cluster (fixed once created)", EnvVars: []string{"THUNDER_SLOTS"}},
					&cli.IntFlag{Name: "replication-factor", Value: 3, Usage: "nodes each group should have", EnvVars: []string{"THUNDER_REPLICATION_FACTOR"}},
					&cli.DurationFlag{Name: "assign-delay", Value: 2 * time.Second, Usage: "wait after the first data node of a new cluster before spreading slots", EnvVars: []string{"THUNDER_ASSIGN_DELAY"}},
				),
				Action: serveCoord,
			},
			{
				Name:  "data",
				Usage: "run a data node of group --group",
				Flags: append(daemonFlags("127.0.0.1:7100"),
					&cli.StringFlag{Name: "group", Required: true, Usage: "replica group `NAME` to join (a new name makes a new group)", EnvVars: []string{"THUNDER_GROUP"}},
					&cli.StringFlag{Name: "dir", Required: true, Usage: "data `PATH` (node id and data file)", EnvVars: []string{"THUNDER_DIR"}},
					&cli.StringFlag{Name: "advertise", Usage: "address clients dial, when it differs from --listen", EnvVars: []string{"THUNDER_ADVERTISE"}},
					&cli.IntFlag{Name: "max-value-size", Value: 4 << 20, Usage: "largest value accepted, in bytes", EnvVars: []string{"THUNDER_MAX_VALUE_SIZE"}},
					&cli.StringFlag{Name: "acks", Value: "all", Usage: "acknowledge a write once durable on every in-sync replica (all) or on the primary alone (1)", EnvVars: []string{"THUNDER_ACKS"}},
					&cli.IntFlag{Name: "min-insync", Value: 1, Usage: "refuse writes while fewer in-sync replicas (primary included) remain", EnvVars: []string{"THUNDER_MIN_INSYNC"}},
					&cli.DurationFlag{Name: "max-lag", Value: 2 * time.Second, Usage: "drop a follower from the in-sync set after it has been behind this long", EnvVars: []string{"THUNDER_MAX_LAG"}},
				),
				Action: serveData,
			},
		},
	}
}

func daemonFlags(listen string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "listen", Value: listen, Usage: "`HOST:PORT` to serve on", EnvVars: []string{"THUNDER_LISTEN"}},
		&cli.StringFlag{Name: "http", Usage: "`HOST:PORT` for /metrics, /healthz and /readyz", EnvVars: []string{"THUNDER_HTTP"}},
		&cli.DurationFlag{Name: "session-timeout", Value: 6 * time.Second, Usage: "ZooKeeper session timeout", EnvVars: []string{"THUNDER_SESSION_TIMEOUT"}},
	}
}

// runDaemon starts a daemon and serves until it stops or a signal comes: the
// first SIGTERM/SIGINT stops it gracefully, a second exits at once.
func runDaemon(c *cli.Context, start func(ctx context.Context, log *slog.Logger, cluster *coord.Cluster) (daemon.Daemon, error)) error {
	log, err := newLogger(c, slog.LevelDebug)
	if err != nil {
		return err
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
	cluster, closeConn, err := clusterConn(ctx, c, log, c.Duration("session-timeout"))
	if err != nil {
		return err
	}
	defer closeConn()
	d, err := start(ctx, log, cluster)
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

func serveCoord(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("serve coord takes no arguments")
	}
	return runDaemon(c, func(ctx context.Context, log *slog.Logger, cluster *coord.Cluster) (daemon.Daemon, error) {
		return coordinator.Start(ctx, coordinator.Config{
			Cluster: cluster, Listen: c.String("listen"), HTTP: c.String("http"),
			Slots: c.Int("slots"), ReplicationFactor: c.Int("replication-factor"),
			AssignDelay: c.Duration("assign-delay"), NodeStatus: client.NodeStatus, Logger: log,
		})
	})
}

func serveData(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("serve data takes no arguments")
	}
	var acks datanode.Acks
	switch c.String("acks") {
	case "all":
		acks = datanode.AcksAll
	case "1":
		acks = datanode.AcksOne
	default:
		return usagef(fmt.Sprintf("--acks %q: want all or 1", c.String("acks")))
	}
	return runDaemon(c, func(ctx context.Context, log *slog.Logger, cluster *coord.Cluster) (daemon.Daemon, error) {
		// A data node started before any coordinator waits for the cluster
		// to be created, bounded so a typo in --cluster does not hang forever.
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		return datanode.Start(sctx, datanode.Config{
			Cluster: cluster, Group: c.String("group"), Listen: c.String("listen"), Advertise: c.String("advertise"),
			HTTP: c.String("http"), Dir: c.String("dir"), MaxValueSize: c.Int("max-value-size"), Logger: log,
			Acks: acks, MinInsync: c.Int("min-insync"), MaxLag: c.Duration("max-lag"),
		})
	})
}
