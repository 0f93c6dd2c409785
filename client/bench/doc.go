// Package bench is the load generator behind `thunderctl bench`: it drives a
// key-value store with many concurrent clients, a chosen read/write mix, and
// reports throughput and latency quantiles.
//
// Each client goroutine keeps its own counters and latency histogram, so the
// only shared state on the hot path is one atomic operation counter; the
// histograms are merged once the run ends. A read of a key that was never
// written counts as NotFound, not as an error, so read-heavy runs on an empty
// cluster still measure the read path.
//
// Example:
//
//	cfg := bench.DefaultConfig()
//	cfg.Ops = 200000
//	cfg.ReadPercent = 50
//	if bench.IsTerminal(os.Stderr) {
//		cfg.Progress = os.Stderr
//	}
//	res, err := bench.Run(ctx, kv, cfg) // kv is a *client.Client
//	if err != nil {
//		return err
//	}
//	return bench.Print(os.Stdout, res, false)
package bench
