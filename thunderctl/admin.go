package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/admin"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

func adminCommand() *cli.Command {
	return &cli.Command{
		Name:  "admin",
		Usage: "inspect and operate the cluster",
		Subcommands: []*cli.Command{
			{
				Name:  "status",
				Usage: "coordinators, groups, nodes and warnings (-o json for scripts); exits 1 when there are warnings",
				Action: func(c *cli.Context) error {
					return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
						st, err := admin.CollectStatus(ctx, cl, nodeclient.NodeStatus, nodeclient.NodeSlotCounts)
						if err != nil {
							return err
						}
						if err := admin.PrintStatus(c.App.Writer, st, f); err != nil {
							return err
						}
						// Every warning is something to act on: monitors
						// and scripts read the exit code.
						if n := len(st.Warnings); n > 0 {
							return fmt.Errorf("cluster %s is unhealthy: %d warning(s)", cl.Name(), n)
						}
						return nil
					})
				},
			},
			{
				Name:      "zk",
				Usage:     "the cluster's znodes with their decoded contents (PATH is relative to the cluster root)",
				ArgsUsage: "[PATH]",
				Flags: []cli.Flag{
					boolFlag("recursive", "include every descendant", "r"),
				},
				Action: func(c *cli.Context) error {
					if c.NArg() > 1 {
						return usagef("admin zk takes at most one argument: PATH")
					}
					p, err := admin.ZnodePath(c.String("cluster"), c.Args().First())
					if err != nil {
						return usagef("admin zk: %v", err)
					}
					return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
						z, err := admin.ReadZnodes(ctx, cl.Conn(), p, c.Bool("recursive"))
						if err != nil {
							return err
						}
						return admin.PrintZnodes(c.App.Writer, z, f)
					})
				},
			},
			{
				Name:  "failover",
				Usage: "move a group's primary: graceful by default (no acknowledged write lost), --force promotes a member that may be behind",
				Flags: []cli.Flag{
					requiredFlag("group", "the group `NAME`", checkGroup),
					stringFlag("to", "", "member `NODE` to promote (graceful: default the most caught-up in-sync member)", nil),
					boolFlag("force", "promote --to NODE now, even if it is behind: acknowledged writes it lacks are lost"),
				},
				Action: func(c *cli.Context) error {
					return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
						res, err := admin.Failover(ctx, cl, c.String("group"), c.String("to"), c.Bool("force"), nodeclient.NodeStatus, nodeclient.Handover)
						if err != nil {
							return usageOr(err, admin.ErrNoSuchMember)
						}
						return admin.PrintFailover(c.App.Writer, res, f)
					})
				},
			},
			{
				Name:  "node",
				Usage: "operate on one data node",
				Subcommands: []*cli.Command{
					{
						Name:  "resync",
						Usage: "make a stopped node rebuild its store from its group's primary at its next start (its files are kept aside)",
						Flags: []cli.Flag{
							requiredFlag("node", "the node `ID` (admin status lists them)", nonEmpty),
							stringFlag("group", "", "the node's group `NAME` (default: the group it is a member of)", checkGroup),
						},
						Action: func(c *cli.Context) error {
							return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
								res, err := admin.Resync(ctx, cl, c.String("group"), c.String("node"))
								if err != nil {
									return usageOr(err, admin.ErrNoSuchMember)
								}
								return admin.PrintResync(c.App.Writer, res, f)
							})
						},
					},
				},
			},
			backupCommand(),
			restoreCommand(),
			{
				Name:  "slots",
				Usage: "which group owns which slot ranges; the migrations in flight and the last finished",
				Action: func(c *cli.Context) error {
					return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
						v, err := admin.CollectSlots(ctx, cl, nodeclient.NodeStatus)
						if err != nil {
							return err
						}
						return admin.PrintSlots(c.App.Writer, v, f)
					})
				},
			},
			rebalanceCommand(),
			drainCommand(),
			groupCommand(),
		},
	}
}

// outputFormat is -o/--output, which its flag checked.
func outputFormat(c *cli.Context) admin.Format {
	f, _ := admin.ParseFormat(c.String("output"))
	return f
}

// withCluster connects to ZooKeeper and runs fn within --timeout.
func withCluster(c *cli.Context, fn func(context.Context, *coord.Cluster, admin.Format) error) error {
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	return inCluster(ctx, c, fn)
}

// inCluster connects to ZooKeeper and runs fn within ctx.
func inCluster(ctx context.Context, c *cli.Context, fn func(context.Context, *coord.Cluster, admin.Format) error) error {
	f := outputFormat(c)
	log := newLogger(c, slog.LevelError)
	cl, closeConn, err := clusterConn(ctx, c, log, 0, true)
	if err != nil {
		return err
	}
	defer closeConn()
	err = fn(ctx, cl, f)
	if errors.Is(err, coord.ErrNoCluster) {
		return fmt.Errorf("cluster %q does not exist in ZooKeeper %s (start a coordinator to create it): %w", cl.Name(), c.String("zk"), err)
	}
	return err
}
