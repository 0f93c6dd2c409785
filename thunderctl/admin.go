package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/admin"
	"github.com/thunderyurts/thunderyurts/client/bench"
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
				Flags: append(adminFlags(),
					boolFlag("watch", "print the status again every --interval until Ctrl-C, in place on a terminal", "w"),
					durationFlag("interval", 2*time.Second, 100*time.Millisecond, time.Hour, "refresh period `DURATION` of --watch"),
				),
				Action: func(c *cli.Context) error {
					nodes, err := nodesOf(c)
					if err != nil {
						return err
					}
					if c.Bool("watch") {
						return watchStatus(c, nodes)
					}
					return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
						st, err := admin.CollectStatus(ctx, cl, nodes.NodeStatus, nodes.NodeSlotCounts)
						if err != nil {
							return err
						}
						if err := admin.PrintStatus(c.App.Writer, st, f); err != nil {
							return err
						}
						// Every warning is something to act on: monitors
						// and scripts read the exit code.
						return st.Problem()
					})
				},
			},
			{
				Name:      "zk",
				Usage:     "the cluster's znodes with their decoded contents (PATH is relative to the cluster root)",
				ArgsUsage: "[PATH]",
				Flags: append(adminFlags(),
					boolFlag("recursive", "include every descendant", "r"),
				),
				Subcommands: []*cli.Command{zkSecureCommand()},
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
				Flags: append(adminFlags(),
					requiredFlag("group", "the group `NAME`", checkGroup),
					stringFlag("to", "", "member `NODE` to promote (graceful: default the most caught-up in-sync member)", nil),
					boolFlag("force", "promote --to NODE now, even if it is behind: acknowledged writes it lacks are lost"),
				),
				Action: func(c *cli.Context) error {
					nodes, err := nodesOf(c)
					if err != nil {
						return err
					}
					return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
						res, err := admin.Failover(ctx, cl, c.String("group"), c.String("to"), c.Bool("force"), nodes.NodeStatus, nodes.Handover)
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
						Flags: append(adminFlags(),
							requiredFlag("node", "the node `ID` (admin status lists them)", nonEmpty),
							stringFlag("group", "", "the node's group `NAME` (default: the group it is a member of)", checkGroup),
						),
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
				Flags: adminFlags(),
				Action: func(c *cli.Context) error {
					nodes, err := nodesOf(c)
					if err != nil {
						return err
					}
					return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
						v, err := admin.CollectSlots(ctx, cl, nodes.NodeStatus)
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
			certsCommand(),
		},
	}
}

// zkSecureCommand migrates a cluster's znodes to the ACL of --zk-auth and
// --zk-acl, or back to open.
func zkSecureCommand() *cli.Command {
	return &cli.Command{
		Name: "secure",
		Usage: "give every znode of the cluster the ACL of --zk-auth and --zk-acl (an existing cluster created without them), " +
			"or make them open to anyone again with --open; prints how many changed, and changes nothing the second time",
		Flags: append(adminFlags(),
			boolFlag("dry-run", "count the znodes that would change, change nothing"),
			boolFlag("open", "give the znodes back the open ACL world:anyone (as without --zk-auth)"),
		),
		Action: func(c *cli.Context) error {
			auth, mode, err := zkOptions(c)
			switch {
			case err != nil:
				return err
			case auth.IsZero():
				return usagef("admin zk secure needs --zk-auth: the identity that gets every right on the znodes")
			case c.Bool("open") && c.String("zk-acl") != "":
				return usagef("admin zk secure: --open and --zk-acl exclude each other")
			case c.Bool("open"):
				mode = coord.ACLOpen
			}
			return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
				conn, ok := cl.Conn().(coord.ACLConn)
				if !ok {
					return fmt.Errorf("admin zk secure: the coordination service keeps no ACLs")
				}
				res, err := admin.ApplyACL(ctx, conn, coord.ClusterPath(cl.Name()), mode, c.Bool("dry-run"))
				if errors.Is(err, coord.ErrNoNode) {
					return fmt.Errorf("%w: %w", coord.ErrNoCluster, err)
				}
				if err != nil {
					return err
				}
				return admin.PrintACLChange(c.App.Writer, res, f)
			})
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
	if err != nil && c.String("coord") != "" {
		// A shell set up for the data commands may reach the cluster
		// through coordinators only; the admin commands need ZooKeeper.
		return fmt.Errorf("%s works on the cluster's state in ZooKeeper (--zk); --coord serves only the data commands: %w", commandPath(c), err)
	}
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

// watchStatus prints the status every --interval until Ctrl-C, which exits
// 0. On a terminal each report replaces the last (cursor home, clear
// screen); otherwise the reports follow one another, an empty line apart.
// A failed collection is printed and watched through, as is an unhealthy
// cluster.
func watchStatus(c *cli.Context, nodes nodeclient.Nodes) error {
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := c.App.Writer
	out, _ := w.(*os.File)
	terminal := bench.IsTerminal(out)
	err := inCluster(ctx, c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
		tick := time.NewTicker(c.Duration("interval"))
		defer tick.Stop()
		var buf bytes.Buffer
		for {
			buf.Reset()
			if terminal && f == admin.FormatTable {
				fmt.Fprintf(&buf, "every %s, at %s (Ctrl-C to stop)\n\n", c.Duration("interval"), time.Now().Format(time.TimeOnly))
			}
			sctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
			st, err := admin.CollectStatus(sctx, cl, nodes.NodeStatus, nodes.NodeSlotCounts)
			cancel()
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				fmt.Fprintf(&buf, "%s status: %v\n", time.Now().Format(time.TimeOnly), err)
			default:
				if err := admin.PrintStatus(&buf, st, f); err != nil {
					return err
				}
			}
			if terminal {
				fmt.Fprint(w, "\x1b[H\x1b[2J")
			} else {
				buf.WriteString("\n")
			}
			if _, err := w.Write(buf.Bytes()); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	})
	if ctx.Err() != nil && c.Context.Err() == nil {
		return nil // Ctrl-C
	}
	return err
}
