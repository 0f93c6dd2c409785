package zkcoord

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/go-zookeeper/zk"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/internal/notify"
)

// Watch implements coord.Conn on ZooKeeper's one-shot data watches, set
// again after every change.
func (c *Conn) Watch(ctx context.Context, path string) (coord.WatchData, <-chan coord.WatchData, error) {
	full, err := c.full(path)
	if err != nil {
		return coord.WatchData{}, nil, fmt.Errorf("watch %s: %w", path, err)
	}
	read := func() (coord.WatchData, <-chan zk.Event, error) {
		r, err := call(ctx, c, func() (watched[coord.WatchData], error) {
			data, stat, events, err := c.zk.GetW(full)
			if err != nil {
				return watched[coord.WatchData]{}, err
			}
			return watched[coord.WatchData]{coord.WatchData{Data: data, Version: coord.Version(stat.Version)}, events}, nil
		})
		return r.v, r.events, err
	}
	final := func(err error) coord.WatchData {
		return coord.WatchData{Err: fmt.Errorf("watch %s: %w", path, err)}
	}
	first, out, err := startWatch(ctx, c, read, final)
	if err != nil {
		return coord.WatchData{}, nil, fmt.Errorf("watch %s: %w", path, err)
	}
	return first, out, nil
}

// WatchChildren implements coord.Conn on ZooKeeper's one-shot child watches.
func (c *Conn) WatchChildren(ctx context.Context, path string) ([]string, <-chan coord.ChildrenData, error) {
	full, err := c.full(path)
	if err != nil {
		return nil, nil, fmt.Errorf("watch children %s: %w", path, err)
	}
	read := func() (coord.ChildrenData, <-chan zk.Event, error) {
		r, err := call(ctx, c, func() (watched[coord.ChildrenData], error) {
			names, _, events, err := c.zk.ChildrenW(full)
			if err != nil {
				return watched[coord.ChildrenData]{}, err
			}
			slices.Sort(names)
			return watched[coord.ChildrenData]{coord.ChildrenData{Children: names}, events}, nil
		})
		return r.v, r.events, err
	}
	final := func(err error) coord.ChildrenData {
		return coord.ChildrenData{Err: fmt.Errorf("watch children %s: %w", path, err)}
	}
	first, out, err := startWatch(ctx, c, read, final)
	if err != nil {
		return nil, nil, fmt.Errorf("watch children %s: %w", path, err)
	}
	return first.Children, out, nil
}

// watched is a value read together with the one-shot watch set on it.
type watched[T any] struct {
	v      T
	events <-chan zk.Event
}

// startWatch reads the first value and starts the goroutine that delivers
// later ones until ctx ends, the node is deleted or the session is in doubt.
// read fetches the value and sets a new one-shot watch; final builds the
// last event from its error.
func startWatch[T any](ctx context.Context, c *Conn, read func() (T, <-chan zk.Event, error), final func(error) T) (T, <-chan T, error) {
	// Taken before the first read: a disconnect right after it still ends
	// the watch.
	session := c.session.Done()
	first, events, err := read()
	if err != nil {
		var zero T
		return zero, nil, err
	}
	out := make(chan T, 1)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case <-session:
				notify.Latest(out, final(c.lost()))
				return
			case ev := <-events:
				switch ev.Type {
				case zk.EventNodeDeleted:
					notify.Latest(out, final(coord.ErrNoNode))
					return
				case zk.EventNotWatching:
					notify.Latest(out, final(c.lost()))
					return
				}
				v, next, err := read()
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					if !errors.Is(err, coord.ErrNoNode) {
						err = fmt.Errorf("%w: %w", c.lost(), err)
					}
					notify.Latest(out, final(err))
					return
				}
				notify.Latest(out, v)
				events = next
			}
		}
	}()
	return first, out, nil
}
