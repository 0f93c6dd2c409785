package coordinator

import "github.com/thunderyurts/thunderyurts/daemon/ops"

// metrics are the coordinator's Prometheus series (docs/metrics.md).
type metrics struct {
	reg *ops.Registry
	// elected counts the leaderships won, failovers the primaries this
	// coordinator promoted as leader.
	elected   ops.Counter
	failovers ops.Counter
}

func newMetrics() *metrics {
	reg := ops.NewRegistry()
	return &metrics{
		reg:     reg,
		elected: reg.Counter("thunder_coord_elections_won_total", "Times this coordinator became leader."),
		failovers: reg.Counter("thunder_coord_failovers_total",
			"Groups whose lost primary this coordinator, as leader, replaced by an in-sync member."),
	}
}

// registerGauges registers the series read from c at each scrape.
func (c *Coordinator) registerGauges() {
	reg := c.metrics.reg
	reg.Gauge("thunder_coord_is_leader", "1 while this coordinator leads.", func() float64 {
		if c.leading.Load() {
			return 1
		}
		return 0
	})
	b := c.cfg.Backups
	if b == nil {
		return
	}
	reg.Gauge("thunder_backup_last_success_timestamp_seconds", "Unix time the newest successful scheduled backup finished; 0: none.", func() float64 {
		if _, ok := b.LastRuns(); !ok.Finished.IsZero() {
			return float64(ok.Finished.Unix())
		}
		return 0
	})
	reg.Gauge("thunder_backup_last_duration_seconds", "How long the newest finished scheduled backup ran.", func() float64 {
		last, _ := b.LastRuns()
		return max(0, last.Finished.Sub(last.Started).Seconds())
	})
	reg.Gauge("thunder_backup_last_bytes", "Bytes the newest successful scheduled backup wrote.", func() float64 {
		_, ok := b.LastRuns()
		return float64(ok.Bytes)
	})
	reg.Gauge("thunder_backup_last_failed", "1 while the newest finished scheduled backup failed.", func() float64 {
		if last, _ := b.LastRuns(); last.Err != "" {
			return 1
		}
		return 0
	})
}
