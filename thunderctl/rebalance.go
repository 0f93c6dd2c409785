package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/admin"
	"github.com/thunderyurts/thunderyurts/client/bench"
	"github.com/thunderyurts/thunderyurts/coord"
)

// progressEvery is how often a followed rebalance's progress is read.
const progressEvery = 250 * time.Millisecond

func rebalanceCommand() *cli.Command {
	return &cli.Command{
		Name:  "rebalance",
		Usage: "move slots between groups, while clients read and write, until each group holds its share by weight",
		Description: "Plans the fewest slot moves that bring every group with a primary within one slot of its share " +
			"(weights: admin group weight; 0 drains a group), prints the plan, hands it to the coordinator leader " +
			"and follows its progress until every move is done. Ctrl-C stops following, not the rebalance; run " +
			"admin rebalance again to follow it, admin slots to see it, --cancel to stop it. Exits 1 if a move failed.\n\n" +
			"Examples:\n" +
			"   thunderctl admin rebalance --dry-run      # the plan, nothing changes\n" +
			"   thunderctl admin rebalance --rate 50      # copy at most 50 MB/s per migration\n" +
			"   thunderctl admin rebalance --cancel       # abort the moves that have not switched",
		Flags: []cli.Flag{
			dryRunFlag(),
			rateFlag(),
			boolFlag("cancel", "stop the rebalance in progress: moves that have not switched are aborted and no more start"),
		},
		Action: func(c *cli.Context) error {
			if c.Bool("cancel") && (c.Bool("dry-run") || c.IsSet("rate")) {
				return usageIn(c, "--cancel takes neither --dry-run nor --rate")
			}
			return runRebalance(c, admin.RebalanceRequest{RateMBps: float64(c.Int("rate")), DryRun: c.Bool("dry-run")}, c.Bool("cancel"))
		},
	}
}

func drainCommand() *cli.Command {
	return &cli.Command{
		Name:  "drain",
		Usage: "move every slot of a group to the others (its weight becomes 0), while clients read and write",
		Description: "Sets the group's weight to 0 and rebalances: its slots spread over the other groups by weight. " +
			"Then stop its nodes and remove it with admin group remove.\n\n" +
			"Examples:\n" +
			"   thunderctl admin drain --group g3 --dry-run\n" +
			"   thunderctl admin drain --group g3 && thunderctl admin group remove g3   # after stopping g3's nodes",
		Flags: []cli.Flag{
			requiredFlag("group", "the group `NAME` to empty", checkGroup),
			dryRunFlag(),
			rateFlag(),
		},
		Action: func(c *cli.Context) error {
			return runRebalance(c, admin.RebalanceRequest{RateMBps: float64(c.Int("rate")), DryRun: c.Bool("dry-run"), Drain: c.String("group")}, false)
		},
	}
}

// The flags rebalance and drain share.
func dryRunFlag() cli.Flag { return boolFlag("dry-run", "print the plan and change nothing") }
func rateFlag() cli.Flag {
	return intFlag("rate", 0, 0, 1_000_000, "bound each migration's copy stream, in `MB/s` (0 = unbounded)")
}

func groupCommand() *cli.Command {
	return &cli.Command{
		Name:  "group",
		Usage: "change a group's record",
		Subcommands: []*cli.Command{
			{
				Name:      "weight",
				Usage:     "set a group's share of the slots relative to the others (default 1; 0 drains it); admin rebalance applies it",
				ArgsUsage: "GROUP WEIGHT",
				Description: "Examples:\n" +
					"   thunderctl admin group weight g1 2 && thunderctl admin rebalance   # g1 holds twice the slots of a weight-1 group",
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return usageIn(c, "admin group weight takes two arguments: GROUP WEIGHT")
					}
					group := c.Args().Get(0)
					if err := checkGroup(group); err != nil {
						return usageIn(c, "%v", err)
					}
					weight, err := strconv.Atoi(c.Args().Get(1))
					if err != nil || weight < 0 || weight > 1_000_000 {
						return usageIn(c, "weight %q: want 0 to 1000000", c.Args().Get(1))
					}
					return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
						res, err := admin.SetGroupWeight(ctx, cl, group, weight)
						if err != nil {
							return usageOr(err, admin.ErrNoSuchGroup)
						}
						return admin.PrintGroupChange(c.App.Writer, res, f)
					})
				},
			},
			{
				Name:      "remove",
				Usage:     "delete an empty group: it owns no slot (admin drain) and none of its nodes runs",
				ArgsUsage: "GROUP",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageIn(c, "admin group remove takes one argument: GROUP")
					}
					group := c.Args().First()
					if err := checkGroup(group); err != nil {
						return usageIn(c, "%v", err)
					}
					return withCluster(c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
						res, err := admin.RemoveGroup(ctx, cl, group)
						if err != nil {
							return usageOr(err, admin.ErrNoSuchGroup)
						}
						return admin.PrintGroupChange(c.App.Writer, res, f)
					})
				},
			},
		},
	}
}

// runRebalance plans (or cancels) a rebalance, prints the plan and follows
// it until it is done or Ctrl-C.
func runRebalance(c *cli.Context, req admin.RebalanceRequest, cancel bool) error {
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	nodes, err := nodesOf(c)
	if err != nil {
		return err
	}
	return inCluster(ctx, c, func(ctx context.Context, cl *coord.Cluster, f admin.Format) error {
		pctx, pcancel := context.WithTimeout(ctx, c.Duration("timeout"))
		var v *admin.RebalanceView
		var err error
		if cancel {
			v, err = admin.CancelRebalance(pctx, cl)
		} else {
			v, err = admin.Rebalance(pctx, cl, req, nodes.NodeSlotCounts)
		}
		pcancel()
		if err != nil {
			return usageOr(err, admin.ErrNoSuchGroup)
		}
		if req.DryRun || len(v.Moves) == 0 {
			return admin.PrintRebalance(c.App.Writer, v, f)
		}
		if f == admin.FormatTable {
			if err := admin.PrintRebalance(c.App.Writer, v, f); err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer)
		}
		show := progressPrinter(c, f)
		p, err := admin.FollowRebalance(ctx, cl, nodes.NodeStatus, progressEvery, c.Duration("timeout"), show.show)
		show.clear()
		if ctx.Err() != nil {
			fmt.Fprintf(c.App.ErrWriter, "stopped following; rebalance %s goes on (admin slots shows it, admin rebalance --cancel stops it)\n", v.Plan)
			return nil
		}
		if err != nil {
			return err
		}
		if f == admin.FormatJSON {
			err = admin.PrintRebalanceRun(c.App.Writer, &admin.RebalanceRun{Plan: v, Result: p}, f)
		} else {
			err = admin.PrintRebalanceProgress(c.App.Writer, p, f)
		}
		if err == nil && len(p.Failed) > 0 {
			err = fmt.Errorf("rebalance %s: %d of its moves failed", p.Plan, len(p.Failed))
		}
		return err
	})
}

// progress shows a followed rebalance: a redrawn bar on a terminal, a line
// per change otherwise, nothing for JSON.
type progress struct {
	c        *cli.Context
	terminal bool
	json     bool
	last     string
}

func progressPrinter(c *cli.Context, f admin.Format) *progress {
	return &progress{c: c, terminal: bench.IsTerminal(os.Stderr), json: f == admin.FormatJSON}
}

func (p *progress) show(r *admin.RebalanceProgress) {
	switch {
	case p.json:
	case p.terminal:
		line := admin.ProgressLine(r)
		fmt.Fprintf(p.c.App.ErrWriter, "\r%s%s", line, strings.Repeat(" ", max(0, len(p.last)-len(line))))
		p.last = line
	default:
		if line := admin.PlainProgressLine(r); line != p.last {
			fmt.Fprintln(p.c.App.Writer, line)
			p.last = line
		}
	}
}

// clear wipes the progress bar, so what follows starts on a clean line.
func (p *progress) clear() {
	if p.terminal && p.last != "" {
		fmt.Fprintf(p.c.App.ErrWriter, "\r%s\r", strings.Repeat(" ", len(p.last)))
	}
}
