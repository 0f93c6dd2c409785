package datanode

import (
	"context"
	"testing"
	"time"
)

// The copy stream's throttle paces what it lets through at its rate, and
// an unbounded one never waits.
func TestThrottlePaces(t *testing.T) {
	ctx := context.Background()
	th := throttle{bytesPerSec: 1e6}
	start := time.Now()
	for range 4 {
		if err := th.wait(ctx, 100_000); err != nil {
			t.Fatal(err)
		}
	}
	// 400 kB at 1 MB/s: at least 0.4 s, whatever the machine's load.
	if took := time.Since(start); took < 350*time.Millisecond {
		t.Fatalf("400 kB passed a 1 MB/s throttle in %s", took)
	}
	free := throttle{}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := free.wait(cctx, 1<<30); err != nil {
		t.Fatalf("unbounded throttle waited: %v", err)
	}
}
