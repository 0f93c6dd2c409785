package main

import (
	"context"
	"math"
	"os"
	"runtime"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/client/bench"
)

func benchCommand() *cli.Command {
	def := bench.DefaultConfig()
	return &cli.Command{
		Name:  "bench",
		Usage: "load the cluster through the client package and print throughput and latency",
		Flags: append(clientFlags(true), outputFlag(),
			intFlag("clients", def.Clients, 1, 100000, "`N` concurrent clients"),
			intFlag("ops", def.Ops, 0, math.MaxInt, "`N` operations in all (0 = run for --duration)"),
			durationFlag("duration", 0, 0, 7*24*time.Hour, "stop after `DURATION` (0 = run --ops)"),
			intFlag("value-size", def.ValueSize, 0, 32<<20, "value size in `BYTES`"),
			intFlag("key-size", def.KeySize, 1, client.MaxKeySize, "key size in `BYTES`"),
			intFlag("keys", def.Keys, 1, math.MaxInt, "key space of `N` keys"),
			intFlag("reads", def.ReadPercent, 0, 100, "share of reads, in `PERCENT`"),
			durationFlag("report-interval", 0, 0, time.Hour, "print throughput and latency for every interval of this `DURATION` (0 = only the total); with -o json, an intervals array"),
			intFlag("procs", 1, 0, 1024, "`N` cores (GOMAXPROCS) the load generator runs on; 0 = all. One, like redis-benchmark: "+
				"on a machine it shares with the cluster it takes less CPU from the servers it measures, and its clients' requests leave in fewer, larger batches"),
		),
		Action: func(c *cli.Context) error {
			format := outputFormat(c)
			if procs := c.Int("procs"); procs > 0 {
				runtime.GOMAXPROCS(procs)
			}
			cfg := bench.Config{
				Clients: c.Int("clients"), Ops: c.Int("ops"), Duration: c.Duration("duration"),
				ValueSize: c.Int("value-size"), KeySize: c.Int("key-size"), Keys: c.Int("keys"), ReadPercent: c.Int("reads"),
			}
			cfg.ReportInterval = c.Duration("report-interval")
			switch {
			case cfg.ReportInterval > 0 && format != "json":
				cfg.Report = c.App.Writer // the interval lines stand in for the progress line
			case bench.IsTerminal(os.Stderr) && format != "json":
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
