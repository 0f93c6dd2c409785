package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/daemon/devcluster"
)

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run a whole local cluster on loopback (ZooKeeper, coordinators, data nodes) until Ctrl-C",
		Description: "Each daemon's log is in DIR/logs, ZooKeeper's in DIR/zookeeper/zookeeper.log. A process that " +
			"exits is reported and started again (after a pause that grows while it keeps failing) unless --no-restart. Example:\n" +
			"   thunderctl dev --base-port 21810      # ZooKeeper on 127.0.0.1:21810 on every run",
		Flags: []cli.Flag{
			clusterFlag(),
			stringFlag("dir", ".dev", "`PATH` for ZooKeeper, data and logs (rerun on it to get the same cluster back)", nonEmpty),
			intFlag("groups", 2, 1, maxReplicas, "`N` replica groups"),
			intFlag("replicas", 2, 1, maxReplicas, "`N` data nodes per group"),
			intFlag("coords", 2, 1, maxReplicas, "`N` coordinators"),
			intFlag("slots", 1024, 1, maxSlots, "`N` slots in a new cluster"),
			stringFlag("acks", "all", "write acknowledgement `ACKS` of the data nodes: all or 1", checkAcks),
			stringFlag("ready-file", "", "write the `FILE` with the export line once the cluster serves (for scripts)", nil),
			intFlag("base-port", 0, 0, 65000, "ZooKeeper on `PORT` and the daemons on the ports after it, so that THUNDER_ZK stays the same across runs (0 = free ports)"),
			stringFlag("zookeeper-jar", "", "the ZooKeeper to run: its server jar or the `PATH` of a release (default: $ZOOKEEPER_HOME, else the Debian package's jar)", checkExists),
			boolFlag("no-restart", "report a daemon or ZooKeeper that exits, but do not start it again"),
		},
		Action: runDev,
	}
}

func runDev(c *cli.Context) error {
	log := startLogger(c)
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	dir, err := filepath.Abs(c.String("dir"))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cl, err := devcluster.Start(sctx, devcluster.Config{
		Binary: self, Dir: dir, Cluster: c.String("cluster"),
		Groups: c.Int("groups"), Replicas: c.Int("replicas"), Coords: c.Int("coords"), Slots: c.Int("slots"), Logger: log,
		DataArgs: []string{"--acks", c.String("acks")},
		BasePort: c.Int("base-port"), ZooKeeper: c.String("zookeeper-jar"), Restart: !c.Bool("no-restart"),
	})
	if err != nil {
		return err
	}
	cl.Describe(c.App.Writer)
	if f := c.String("ready-file"); f != "" {
		line := fmt.Sprintf("export THUNDER_ZK=%s THUNDER_CLUSTER=%s\n", cl.ZK(), c.String("cluster"))
		if err := os.WriteFile(f, []byte(line), 0o644); err != nil {
			_ = cl.Stop()
			return fmt.Errorf("ready file: %w", err)
		}
	}
	<-ctx.Done()
	fmt.Fprintln(c.App.Writer, "stopping the dev cluster…")
	return cl.Stop()
}
