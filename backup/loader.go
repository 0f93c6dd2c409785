package backup

import (
	"context"
	"fmt"
	"sync"

	"github.com/thunderyurts/thunderyurts/client"
)

// Bounds of a restore's writes in flight: enough concurrent puts that the
// client's batches to every primary stay large, and a cap on the bytes they
// hold, so a backup of large values does not fill memory.
const (
	restorePuts  = 512
	restoreBytes = 64 << 20
)

// loader puts pairs into the cluster through many concurrent client puts:
// the client gathers the puts waiting for one primary into one batch, so
// the cluster sees large batches. The first error stops it.
type loader struct {
	kv    *client.Client
	pairs chan pair
	m     *meter

	mu     sync.Mutex
	budget int // bytes that may still be queued or in flight
	room   *sync.Cond

	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
}

type pair struct{ key, value []byte }

func newLoader(ctx context.Context, kv *client.Client, m *meter) *loader {
	l := &loader{kv: kv, pairs: make(chan pair, restorePuts), m: m, budget: restoreBytes}
	l.room = sync.NewCond(&l.mu)
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	// A cancelled load must wake a put waiting for room.
	stop := context.AfterFunc(l.ctx, func() {
		l.mu.Lock()
		l.room.Broadcast()
		l.mu.Unlock()
	})
	l.wg.Add(restorePuts)
	for range restorePuts {
		go func() {
			defer l.wg.Done()
			for p := range l.pairs {
				if l.ctx.Err() == nil {
					if err := kv.Put(l.ctx, p.key, p.value); err != nil {
						l.cancel(fmt.Errorf("put %q: %w", shorten(p.key), err))
					} else {
						m.add(len(p.key), len(p.value))
					}
				}
				l.release(len(p.key) + len(p.value))
			}
		}()
	}
	go func() { l.wg.Wait(); stop() }()
	return l
}

// put queues a copy of the pair, waiting while too many bytes are in flight.
func (l *loader) put(key, value []byte) error {
	size := len(key) + len(value)
	l.mu.Lock()
	// One pair larger than the whole budget still goes, alone.
	for l.budget < min(size, restoreBytes) && l.ctx.Err() == nil {
		l.room.Wait()
	}
	l.budget -= size
	l.mu.Unlock()
	if err := l.ctx.Err(); err != nil {
		l.release(size)
		return context.Cause(l.ctx)
	}
	l.pairs <- pair{key: append([]byte(nil), key...), value: append([]byte(nil), value...)}
	return nil
}

func (l *loader) release(size int) {
	l.mu.Lock()
	l.budget += size
	l.room.Broadcast()
	l.mu.Unlock()
}

// wait waits for every queued put and returns the first error.
func (l *loader) wait() error {
	close(l.pairs)
	l.wg.Wait()
	if err := context.Cause(l.ctx); err != nil && l.ctx.Err() != nil {
		return err
	}
	l.cancel(nil)
	return nil
}

// shorten keeps a key readable in an error line.
func shorten(key []byte) string {
	if len(key) > 64 {
		return string(key[:64]) + "…"
	}
	return string(key)
}
