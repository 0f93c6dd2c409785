package bench

import (
	"fmt"
	"strings"
	"time"
)

// progressInterval keeps redraws to about five a second: often enough to look
// live, rare enough to cost nothing next to the operations.
const progressInterval = 200 * time.Millisecond

const barWidth = 30

// showProgress redraws the progress line on r.cfg.Progress until done is
// closed, then clears it so the report starts on a clean line. Write errors
// are ignored: the progress line is cosmetic and must not fail the run.
func (r *run) showProgress(start time.Time, done <-chan struct{}) {
	ticker := time.NewTicker(progressInterval)
	defer ticker.Stop()
	var lastLen int
	prevOps, prevAt := int64(0), start
	for {
		select {
		case <-done:
			fmt.Fprintf(r.cfg.Progress, "\r%s\r", strings.Repeat(" ", lastLen))
			return
		case now := <-ticker.C:
			ops := r.started.Load()
			if r.cfg.Ops > 0 {
				ops = min(ops, int64(r.cfg.Ops))
			}
			rate := float64(ops-prevOps) / now.Sub(prevAt).Seconds()
			prevOps, prevAt = ops, now
			line := progressLine(r.cfg, ops, now.Sub(start), rate)
			// Pad over the tail of a longer previous line.
			pad := max(0, lastLen-len(line))
			fmt.Fprintf(r.cfg.Progress, "\r%s%s", line, strings.Repeat(" ", pad))
			lastLen = len(line)
		}
	}
}

// progressLine renders one progress line: a bar over whichever bound ends the
// run sooner by the current estimate, the count, and the current rate.
func progressLine(cfg Config, ops int64, elapsed time.Duration, rate float64) string {
	var frac float64
	var count string
	if cfg.Ops > 0 {
		frac = float64(ops) / float64(cfg.Ops)
		count = fmt.Sprintf("%d/%d ops", ops, cfg.Ops)
	} else {
		count = fmt.Sprintf("%d ops", ops)
	}
	if cfg.Duration > 0 {
		frac = max(frac, float64(elapsed)/float64(cfg.Duration))
		count += fmt.Sprintf(" %s/%s", elapsed.Truncate(100*time.Millisecond), cfg.Duration)
	}
	frac = min(frac, 1)
	filled := int(frac * barWidth)
	return fmt.Sprintf("[%s%s] %3.0f%% %s %.0f ops/s",
		strings.Repeat("#", filled), strings.Repeat("-", barWidth-filled), frac*100, count, rate)
}
