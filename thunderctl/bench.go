package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/client/bench"
	"github.com/thunderyurts/thunderyurts/coord"
)

func benchCommand() *cli.Command {
	def := bench.DefaultConfig()
	return &cli.Command{
		Name:  "bench",
		Usage: "load the cluster through the client package and print throughput and latency",
		Description: "Example:\n   thunderctl bench --clients 64 --duration 30s --reads 0 --report-interval 1s\n" +
			"Ctrl-C (or SIGTERM) ends the run early and prints the figures of the operations that finished, as the end of --duration would, exit 0.",
		Flags: append(clientFlags(true), outputFlag(),
			intFlag("clients", def.Clients, 1, 100000, "`N` concurrent clients"),
			intFlag("ops", def.Ops, 0, math.MaxInt, "`N` operations in all (0 = run for --duration)"),
			durationFlag("duration", 0, 0, 7*24*time.Hour, "stop after `DURATION` (0 = run --ops)"),
			intFlag("value-size", def.ValueSize, 0, 32<<20, "value size in `BYTES`"),
			intFlag("key-size", def.KeySize, 1, client.MaxKeySize, "key size in `BYTES`"),
			intFlag("keys", def.Keys, 1, math.MaxInt, "key space of `N` keys"),
			intFlag("reads", def.ReadPercent, 0, 100, "share of reads, in `PERCENT`"),
			stringFlag("key-slots", "", "only the keys of these `SLOTS`, a list of slots and ranges such as 0-41,64-105 (default: every slot): "+
				"load part of the key space, such as the slots a rebalance leaves in place", checkSlotList),
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
			// Ctrl-C (or SIGTERM) ends the run early: the figures of what
			// ran are printed, as at the end of --duration. Caught from
			// the start, so that a signal while connecting ends the
			// command with an error rather than killing it silently.
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			context.AfterFunc(ctx, stop) // a second signal has its default effect again
			// --timeout bounds each operation here, not the whole run.
			rctx, rcancel := context.WithTimeout(ctx, c.Duration("timeout"))
			kv, closeClient, err := newClient(rctx, c)
			rcancel()
			if err != nil {
				return err
			}
			defer closeClient()
			if list := c.String("key-slots"); list != "" {
				slots := len(kv.Routes().Table.Owners)
				in, err := slotSet(list, slots)
				if err != nil {
					return usageIn(c, "--key-slots %q: %v", list, err)
				}
				cfg.KeyFilter = func(key []byte) bool { return in[coord.SlotOf(key, slots)] }
			}
			// The client bounds each operation by --timeout.
			res, err := bench.Run(ctx, kv, cfg)
			switch {
			case res != nil && errors.Is(err, context.Canceled) && res.Ops > 0:
				fmt.Fprintf(c.App.ErrWriter, "bench: interrupted after %s; the figures cover the operations that finished\n", res.Elapsed.Round(time.Millisecond))
			case errors.Is(err, context.Canceled):
				return errors.New("bench: interrupted before any operation finished")
			case err != nil:
				return usageOr(err, bench.ErrInvalidConfig)
			}
			return bench.Print(c.App.Writer, res, format == "json")
		},
	}
}

// checkSlotList checks the form of a --key-slots list.
func checkSlotList(list string) error {
	_, err := parseSlotList(list)
	return err
}

// parseSlotList reads a --key-slots list: slots and ranges FIRST-LAST,
// separated by commas, as ranges (of no group).
func parseSlotList(list string) ([]coord.SlotRange, error) {
	var ranges []coord.SlotRange
	for _, part := range strings.Split(list, ",") {
		first, last, isRange := strings.Cut(part, "-")
		lo, err := strconv.Atoi(strings.TrimSpace(first))
		hi := lo
		if err == nil && isRange {
			hi, err = strconv.Atoi(strings.TrimSpace(last))
		}
		if err != nil || lo < 0 || hi < lo {
			return nil, fmt.Errorf("%q is not a slot or a range FIRST-LAST", part)
		}
		ranges = append(ranges, coord.SlotRange{From: lo, To: hi})
	}
	return ranges, nil
}

// slotSet is the set of the slots a --key-slots list names, among slots.
func slotSet(list string, slots int) ([]bool, error) {
	ranges, err := parseSlotList(list)
	if err != nil {
		return nil, err
	}
	in := make([]bool, slots)
	for _, r := range ranges {
		if r.To >= slots {
			return nil, fmt.Errorf("slot %d is not one of the cluster's %d (0-%d)", r.To, slots, slots-1)
		}
		for slot := r.From; slot <= r.To; slot++ {
			in[slot] = true
		}
	}
	return in, nil
}
