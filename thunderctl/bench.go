package main

import (
	"context"
	"fmt"
	"os"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/client/bench"
)

func benchCommand() *cli.Command {
	def := bench.DefaultConfig()
	return &cli.Command{
		Name:  "bench",
		Usage: "load the cluster through the client package and print throughput and latency",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "clients", Value: def.Clients, Usage: "concurrent clients", EnvVars: []string{"THUNDER_CLIENTS"}},
			&cli.IntFlag{Name: "ops", Value: def.Ops, Usage: "total operations (0 = run for --duration)", EnvVars: []string{"THUNDER_OPS"}},
			&cli.DurationFlag{Name: "duration", Usage: "stop after this long (0 = run --ops)", EnvVars: []string{"THUNDER_DURATION"}},
			&cli.IntFlag{Name: "value-size", Value: def.ValueSize, Usage: "value size in bytes", EnvVars: []string{"THUNDER_VALUE_SIZE"}},
			&cli.IntFlag{Name: "key-size", Value: def.KeySize, Usage: "key size in bytes", EnvVars: []string{"THUNDER_KEY_SIZE"}},
			&cli.IntFlag{Name: "keys", Value: def.Keys, Usage: "key space", EnvVars: []string{"THUNDER_KEYS"}},
			&cli.IntFlag{Name: "reads", Value: def.ReadPercent, Usage: "share of reads, in `PERCENT`", EnvVars: []string{"THUNDER_READS"}},
			&cli.IntFlag{Name: "procs", Value: 1, Usage: "cores (GOMAXPROCS) the load generator runs on; 0 = all. One, like redis-benchmark: " +
				"on a machine it shares with the cluster it takes less CPU from the servers it measures, and its clients' requests leave in fewer, larger batches", EnvVars: []string{"THUNDER_PROCS"}},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("bench takes no arguments (see --help)")
			}
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			switch procs := c.Int("procs"); {
			case procs < 0:
				return usagef(fmt.Sprintf("--procs must be 0 (all cores) or more, not %d", procs))
			case procs > 0:
				runtime.GOMAXPROCS(procs)
			}
			cfg := bench.Config{
				Clients: c.Int("clients"), Ops: c.Int("ops"), Duration: c.Duration("duration"),
				ValueSize: c.Int("value-size"), KeySize: c.Int("key-size"), Keys: c.Int("keys"), ReadPercent: c.Int("reads"),
			}
			if bench.IsTerminal(os.Stderr) && format != "json" {
				cfg.Progress = c.App.ErrWriter
			}
			// --timeout bounds each operation here, not the whole run.
			ctx, cancel := context.WithCancel(c.Context)
			defer cancel()
			rctx, rcancel := context.WithTimeout(ctx, c.Duration("timeout"))
			kv, closeClient, err := newClient(rctx, c)
			rcancel()
			if err != nil {
				return err
			}
			defer closeClient()
			// The client bounds each operation by --timeout.
			res, err := bench.Run(ctx, kv, cfg)
			if err != nil {
				return usageOr(err, bench.ErrInvalidConfig)
			}
			return bench.Print(c.App.Writer, res, format == "json")
		},
	}
}
