package backup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/wire"
)

// How a restore writes: keys go to their group's primary in batches of
// about loadBatchBytes of keys and values (Data.Load, appended as one
// write), up to loadInFlight batches per group at once, so that each
// group commit and each round trip to the replicas carries many keys.
// Memory stays bounded by a few batches per group.
const (
	loadBatchBytes = 1 << 20
	loadInFlight   = 4
	// loadRetryFor is how long a batch may keep being refused (its slots
	// not served: a failover, a migration's hand-over) before the restore
	// gives up.
	loadRetryFor = time.Minute
	// loadCallTimeout bounds one Load call: a primary waiting for a
	// replica that stopped answering is asked again after this.
	loadCallTimeout = 30 * time.Second
)

// loader writes pairs into the cluster through Data.Load. put routes each
// pair by the slot table and adds it to its group's batch; a full batch
// is sent by a goroutine of its own. A batch refused because a slot is not
// served where it was sent is routed again from a fresh slot table and
// sent again, until loadRetryFor has passed. The first error stops it.
type loader struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	// routesOf reads the route table; load writes one batch at addr
	// (nodeclient.Nodes.Load).
	routesOf func(context.Context) (*coord.RouteTable, error)
	load     func(ctx context.Context, addr string, items []*wire.KeyValue) error
	m        *meter
	retryFor time.Duration

	mu     sync.Mutex
	routes *coord.RouteTable // the newest read

	// Owned by the caller of put and wait.
	filling  map[string]*loadBatch    // by group
	inflight map[string]chan struct{} // by group: a token per batch being sent
	wg       sync.WaitGroup
}

// loadBatch is a group's batch being filled: its keys and values are
// copied into arena, a chunk at a time.
type loadBatch struct {
	group string
	items []*wire.KeyValue
	bytes int
	arena []byte
}

func newLoader(ctx context.Context, routes *coord.RouteTable, routesOf func(context.Context) (*coord.RouteTable, error),
	load func(context.Context, string, []*wire.KeyValue) error, m *meter) *loader {
	l := &loader{routesOf: routesOf, load: load, m: m, retryFor: loadRetryFor, routes: routes,
		filling: map[string]*loadBatch{}, inflight: map[string]chan struct{}{}}
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	return l
}

// put adds a copy of the pair to its group's batch, sending the batch
// once full; it waits while the group has loadInFlight batches in flight.
func (l *loader) put(key, value []byte) error {
	if err := l.ctx.Err(); err != nil {
		return context.Cause(l.ctx)
	}
	l.mu.Lock()
	rt := l.routes
	l.mu.Unlock()
	// A slot without an owner goes to group "": refused, then routed again.
	group := rt.Table.Owner(coord.SlotOf(key, len(rt.Table.Owners)))
	b := l.filling[group]
	if b == nil {
		b = &loadBatch{group: group}
		l.filling[group] = b
	}
	b.add(key, value)
	if b.bytes < loadBatchBytes {
		return nil
	}
	delete(l.filling, group)
	return l.send(b)
}

// add appends a copy of the pair.
func (b *loadBatch) add(key, value []byte) {
	n := len(key) + len(value)
	if cap(b.arena)-len(b.arena) < n {
		b.arena = make([]byte, 0, max(n, 64<<10))
	}
	start := len(b.arena)
	b.arena = append(append(b.arena, key...), value...)
	kv := b.arena[start:len(b.arena):len(b.arena)]
	b.items = append(b.items, &wire.KeyValue{Key: kv[:len(key):len(key)], Value: kv[len(key):]})
	b.bytes += n
}

// send starts sending b once its group has room in flight.
func (l *loader) send(b *loadBatch) error {
	tokens := l.inflight[b.group]
	if tokens == nil {
		tokens = make(chan struct{}, loadInFlight)
		l.inflight[b.group] = tokens
	}
	select {
	case tokens <- struct{}{}:
	case <-l.ctx.Done():
		return context.Cause(l.ctx)
	}
	l.wg.Add(1)
	go func() { // owned by the loader: wait waits for it
		defer l.wg.Done()
		defer func() { <-tokens }()
		if err := l.deliver(b.group, b.items); err != nil {
			l.cancel(err)
		}
	}()
	return nil
}

// wait sends the batches not yet full, waits for every batch and returns
// the first error.
func (l *loader) wait() error {
	for group, b := range l.filling {
		delete(l.filling, group)
		if l.send(b) != nil {
			break
		}
	}
	l.wg.Wait()
	err := context.Cause(l.ctx) // nil unless stopped
	l.cancel(nil)
	return err
}

// deliver writes items, first sent to group: the parts refused are routed
// again from a fresh table and sent again, until every key is written or
// a part has been refused for retryFor.
func (l *loader) deliver(group string, items []*wire.KeyValue) error {
	parts := map[string][]*wire.KeyValue{group: items}
	var refusedSince time.Time
	var last error
	for backoff := 20 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		var again []*wire.KeyValue
		for g, part := range parts {
			err := l.loadPart(g, part)
			switch {
			case err == nil:
				size := 0
				for _, kv := range part {
					size += len(kv.Key) + len(kv.Value)
				}
				l.m.addBatch(len(part), size)
			case l.ctx.Err() != nil:
				return context.Cause(l.ctx)
			case errors.Is(err, wire.ErrInvalidArgument), errors.Is(err, wire.ErrPermissionDenied), errors.Is(err, wire.ErrCorrupt):
				return err
			default:
				again, last = append(again, part...), err
			}
		}
		if len(again) == 0 {
			return nil
		}
		if refusedSince.IsZero() {
			refusedSince = time.Now()
		}
		if time.Since(refusedSince) >= l.retryFor {
			return fmt.Errorf("%d key(s) (%q among them) still refused after %s of routing them again: %w", len(again), shorten(again[0].Key), l.retryFor, last)
		}
		if err := clock.Sleep(l.ctx, backoff); err != nil {
			return context.Cause(l.ctx)
		}
		rt := l.refresh()
		parts = map[string][]*wire.KeyValue{}
		for _, kv := range again {
			g := rt.Table.Owner(coord.SlotOf(kv.Key, len(rt.Table.Owners)))
			parts[g] = append(parts[g], kv)
		}
	}
}

// loadPart sends one batch to the primary of group, by the newest routes.
func (l *loader) loadPart(group string, items []*wire.KeyValue) error {
	l.mu.Lock()
	route := l.routes.Groups[group]
	l.mu.Unlock()
	switch {
	case group == "":
		return fmt.Errorf("%w: the slot table leaves their slot unassigned", wire.ErrUnavailable)
	case route.PrimaryAddr == "":
		return fmt.Errorf("%w: group %s has no registered primary", wire.ErrUnavailable, group)
	}
	ctx, cancel := context.WithTimeout(l.ctx, loadCallTimeout)
	defer cancel()
	return l.load(ctx, route.PrimaryAddr, items)
}

// refresh reads the routes again and returns the newest; a failed read
// keeps the routes known (the next round tries again).
func (l *loader) refresh() *coord.RouteTable {
	rt, err := l.routesOf(l.ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil && rt.Table.Version >= l.routes.Table.Version {
		l.routes = rt
	}
	return l.routes
}

// shorten keeps a key readable in an error line.
func shorten(key []byte) string {
	if len(key) > 64 {
		return string(key[:64]) + "…"
	}
	return string(key)
}
