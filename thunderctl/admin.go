package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/admin"
	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
)

func adminCommand() *cli.Command {
	return &cli.Command{
		Name:  "admin",
		Usage: "inspect and operate the cluster",
		Subcommands: []*cli.Command{
			{
				Name:  "status",
				Usage: "coordinators, groups, nodes and warnings (-o json for scripts)",
				Action: func(c *cli.Context) error {
					return withCluster(c, 0, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
						st, err := admin.CollectStatus(ctx, cl, client.NodeStatus)
						if err != nil {
							return err
						}
						return admin.PrintStatus(c.App.Writer, st, f)
					})
				},
			},
			{
				Name:      "zk",
				Usage:     "the cluster's znodes with their decoded contents (PATH is relative to the cluster root)",
				ArgsUsage: "[PATH]",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, Usage: "include every descendant", EnvVars: []string{"THUNDER_RECURSIVE"}},
				},
				Action: func(c *cli.Context) error {
					return withCluster(c, 1, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
						p := path.Join(coord.ClusterPath(cl.Name()), c.Args().First())
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
					&cli.StringFlag{Name: "group", Required: true, Usage: "the group `NAME`", EnvVars: []string{"THUNDER_GROUP"}},
					&cli.StringFlag{Name: "to", Usage: "member `NODE` to promote (graceful: default the most caught-up in-sync member)", EnvVars: []string{"THUNDER_TO"}},
					&cli.BoolFlag{Name: "force", Usage: "promote --to NODE now, even if it is behind: acknowledged writes it lacks are lost", EnvVars: []string{"THUNDER_FORCE"}},
				},
				Action: func(c *cli.Context) error {
					return withCluster(c, 0, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
						res, err := admin.Failover(ctx, cl, c.String("group"), c.String("to"), c.Bool("force"), client.NodeStatus, client.Handover)
						if err != nil {
							return usageOr(err, admin.ErrNoSuchMember)
						}
						return admin.PrintFailover(c.App.Writer, res, f)
					})
				},
			},
			{
				Name:  "slots",
				Usage: "which group owns which slot ranges",
				Action: func(c *cli.Context) error {
					return withCluster(c, 0, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
						t, _, err := cl.SlotTable(ctx)
						if err != nil {
							return err
						}
						return admin.PrintSlots(c.App.Writer, t, f)
					})
				},
			},
		},
	}
}

func outputFormat(c *cli.Context) (admin.Format, error) {
	f, err := admin.ParseFormat(c.String("output"))
	if err != nil {
		return "", usagef("-o/--output: " + err.Error())
	}
	return f, nil
}

// withCluster checks the arguments and output format, connects to
// ZooKeeper and runs fn within --timeout.
func withCluster(c *cli.Context, maxArgs int, fn func(context.Context, *coord.Cluster, admin.Format) error) error {
	if c.NArg() > maxArgs {
		return usagef(fmt.Sprintf("%s takes at most %d argument(s): %s", c.Command.FullName(), maxArgs, strings.TrimSpace(c.Command.ArgsUsage)))
	}
	f, err := outputFormat(c)
	if err != nil {
		return err
	}
	log, err := newLogger(c, slog.LevelError)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	cl, closeConn, err := clusterConn(ctx, c, log, 0)
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
