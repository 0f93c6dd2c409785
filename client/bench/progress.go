package bench

import (
	"fmt"
	"io"
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
	line := &Line{W: r.cfg.Progress}
	prevOps, prevAt := int64(0), start
	for {
		select {
		case <-done:
			line.Clear()
			return
		case now := <-ticker.C:
			ops := r.started.Load()
			if r.cfg.Ops > 0 {
				ops = min(ops, int64(r.cfg.Ops))
			}
			rate := float64(ops-prevOps) / now.Sub(prevAt).Seconds()
			prevOps, prevAt = ops, now
			line.Draw(progressLine(r.cfg, ops, now.Sub(start), rate))
		}
	}
}

// Line is one progress line redrawn in place on a terminal. Write errors
// are ignored: it is cosmetic.
type Line struct {
	W       io.Writer
	lastLen int
}

// Draw replaces the line with s.
func (l *Line) Draw(s string) {
	// Pad over the tail of a longer previous line.
	fmt.Fprintf(l.W, "\r%s%s", s, strings.Repeat(" ", max(0, l.lastLen-len(s))))
	l.lastLen = len(s)
}

// Clear blanks the line, so what follows starts on a clean one.
func (l *Line) Clear() {
	fmt.Fprintf(l.W, "\r%s\r", strings.Repeat(" ", l.lastLen))
	l.lastLen = 0
}

// Bar is a progress bar of frac (0 to 1) done: [#####-----].
func Bar(frac float64) string {
	filled := int(min(max(frac, 0), 1) * barWidth)
	return "[" + strings.Repeat("#", filled) + strings.Repeat("-", barWidth-filled) + "]"
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
	return fmt.Sprintf("%s %3.0f%% %s %.0f ops/s", Bar(frac), frac*100, count, rate)
}
