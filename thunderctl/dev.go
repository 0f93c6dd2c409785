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
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Value: ".dev", Usage: "`PATH` for ZooKeeper, data and logs (rerun on it to get the same cluster back)", EnvVars: []string{"THUNDER_DIR"}},
			&cli.IntFlag{Name: "groups", Value: 2, Usage: "replica groups", EnvVars: []string{"THUNDER_GROUPS"}},
			&cli.IntFlag{Name: "replicas", Value: 2, Usage: "data nodes per group", EnvVars: []string{"THUNDER_REPLICAS"}},
			&cli.IntFlag{Name: "coords", Value: 2, Usage: "coordinators", EnvVars: []string{"THUNDER_COORDS"}},
			&cli.IntFlag{Name: "slots", Value: 1024, Usage: "slot count of a new cluster", EnvVars: []string{"THUNDER_SLOTS"}},
			&cli.StringFlag{Name: "acks", Value: "all", Usage: "write acknowledgement of the data nodes: all or 1", EnvVars: []string{"THUNDER_ACKS"}},
			&cli.StringFlag{Name: "ready-file", Usage: "write the `FILE` with the export line once the cluster serves (for scripts)", EnvVars: []string{"THUNDER_READY_FILE"}},
		},
		Action: runDev,
	}
}

func runDev(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("dev takes no arguments")
	}
	for _, name := range []string{"groups", "replicas", "coords"} {
		if c.Int(name) < 1 || c.Int(name) > 16 {
			return usagef(fmt.Sprintf("--%s must be between 1 and 16", name))
		}
	}
	log, err := newLogger(c, 0)
	if err != nil {
		return err
	}
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
