// Package clock holds the one way every package waits: a sleep that ends
// early when its context does.
package clock

import (
	"context"
	"time"
)

// Sleep waits for d or until ctx ends, whichever comes first; it returns
// ctx's error in the second case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
