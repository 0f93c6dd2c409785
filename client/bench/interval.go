package bench

import (
	"fmt"
	"time"
)

// intervalCounts are one worker's counts in the current interval.
type intervalCounts struct {
	hist        *histogram
	ops, errors uint64
}

func newIntervalCounts() *intervalCounts { return &intervalCounts{hist: newHistogram()} }

// count records an operation; ok is false for a failure, whose latency is
// not recorded (as in Result).
func (c *intervalCounts) count(ok bool, took time.Duration) {
	c.ops++
	if !ok {
		c.errors++
		return
	}
	c.hist.record(took)
}

// reportIntervals closes an interval every r.cfg.ReportInterval, and a
// last one when done is closed, writing a line for each to r.cfg.Report.
func (r *run) reportIntervals(workers []*worker, start time.Time, done <-chan struct{}) []Interval {
	ticker := time.NewTicker(r.cfg.ReportInterval)
	defer ticker.Stop()
	var out []Interval
	prev := start
	for {
		var now time.Time
		final := false
		select {
		case now = <-ticker.C:
		case <-done:
			now, final = time.Now(), true
		}
		iv := closeInterval(workers, now.Sub(start), now.Sub(prev))
		prev = now
		if !final || iv.Ops > 0 {
			out = append(out, iv)
			if r.cfg.Report != nil {
				// Write errors are ignored, as for the progress line.
				fmt.Fprintf(r.cfg.Report, "%8s  %8.0f ops/s  p50 %-9s p99 %-9s max %-9s errors %d\n",
					iv.End.Round(time.Millisecond), iv.OpsPerSec, roundLatency(iv.P50), roundLatency(iv.P99), roundLatency(iv.Max), iv.Errors)
			}
		}
		if final {
			return out
		}
	}
}

// closeInterval takes every worker's counts of the interval that ends at
// end and lasted length, and starts the next one.
func closeInterval(workers []*worker, end, length time.Duration) Interval {
	sum := newIntervalCounts()
	for _, w := range workers {
		w.mu.Lock()
		c := w.cur
		w.cur = newIntervalCounts()
		w.mu.Unlock()
		sum.ops += c.ops
		sum.errors += c.errors
		sum.hist.merge(c.hist)
	}
	iv := Interval{End: end, Ops: sum.ops, Errors: sum.errors,
		P50: sum.hist.quantile(0.50), P99: sum.hist.quantile(0.99), Max: sum.hist.max}
	if length > 0 {
		iv.OpsPerSec = float64(sum.ops-sum.errors) / length.Seconds()
	}
	return iv
}
