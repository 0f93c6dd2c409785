package main

import (
	"context"
	"fmt"
	"log/slog"
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
		Flags: []cli.Flag{
			stringFlag("dir", ".dev", "`PATH` for ZooKeeper, data and logs (rerun on it to get the same cluster back)", nonEmpty),
			intFlag("groups", 2, 1, maxReplicas, "replica groups"),
			intFlag("replicas", 2, 1, maxReplicas, "data nodes per group"),
			intFlag("coords", 2, 1, maxReplicas, "coordinators"),
			intFlag("slots", 1024, 1, maxSlots, "slot count of a new cluster"),
			stringFlag("acks", "all", "write acknowledgement of the data nodes: all or 1", checkAcks),
			stringFlag("ready-file", "", "write the `FILE` with the export line once the cluster serves (for scripts)", nil),
		},
		Action: runDev,
	}
}

func runDev(c *cli.Context) error {
	log := newLogger(c, slog.LevelInfo)
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	dir, err := filepath.Abs(c.String("dir"))
	if err != nil {
		return err
	}
	auth, acl, err := zkOptions(c)
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
		DataArgs: []string{"--acks", c.String("acks")}, ZKAuth: auth, ZKACL: acl,
	})
	if err != nil {
		return err
	}
	cl.Describe(c.App.Writer)
	if f := c.String("ready-file"); f != "" {
		if err := os.WriteFile(f, []byte(cl.ExportLine()+"\n"), 0o644); err != nil {
			_ = cl.Stop()
			return fmt.Errorf("ready file: %w", err)
		}
	}
	<-ctx.Done()
	fmt.Fprintln(c.App.Writer, "stopping the dev cluster…")
	return cl.Stop()
}
