package memcoord

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/internal/notify"
)

// Conn is one client of a Server, implementing coord.Conn, with one session
// at a time. Fault injection: ExpireSession and SetUnavailable. Calls never
// block; a context that has already ended fails the call (coord.ContextError).
type Conn struct {
	srv     *Server
	session *notify.Session

	// Guarded by srv.mu.
	id          int64 // current session id
	unavailable bool
	cutAt       time.Time // when unavailable began: the session's last sign of life
	closed      bool
	watches     map[*watch]struct{}
}

var _ coord.Conn = (*Conn)(nil)

// ExpireSession ends the current session as the service does when a client
// has been silent longer than its session timeout: the session's ephemeral
// nodes are deleted, SessionDone is closed and open watches end with
// coord.ErrSessionLost. The Conn then continues with a new session (even if
// it is unavailable: the new session starts when it is reachable again).
func (c *Conn) ExpireSession() {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	if c.closed {
		return
	}
	c.interrupt(coord.ErrSessionLost)
	c.srv.removeEphemerals(c.id)
	c.srv.sessions++
	c.id = c.srv.sessions
	c.cutAt = time.Time{} // a new session, not confirmed while cut off
}

// SetUnavailable cuts the Conn off from the service (true) or reconnects it
// (false). While cut off every call fails with coord.ErrUnavailable and the
// session is in doubt, as with a ZooKeeper client that lost its connection:
// SessionDone is closed and open watches end with coord.ErrSessionLost. The
// session itself survives (its ephemeral nodes stay) unless ExpireSession is
// called.
func (c *Conn) SetUnavailable(down bool) {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	if down && !c.unavailable && !c.closed {
		c.interrupt(coord.ErrSessionLost)
		c.cutAt = time.Now()
	}
	c.unavailable = down
}

// interrupt puts the session in doubt and ends every watch with err.
func (c *Conn) interrupt(err error) {
	c.session.Down()
	for w := range c.watches {
		w.finish(c.srv, err)
	}
}

// lock takes the server lock for one call, or fails it: ctx ended, Conn
// closed or unavailable, bad path. On success the caller must unlock.
func (c *Conn) lock(ctx context.Context, path string) error {
	if err := coord.ContextError(ctx); err != nil {
		return err
	}
	if err := coord.ValidatePath(path); err != nil {
		return err
	}
	c.srv.mu.Lock()
	switch {
	case c.closed:
		c.srv.mu.Unlock()
		return coord.ErrClosed
	case c.unavailable:
		c.srv.mu.Unlock()
		return fmt.Errorf("%w: cut off by fault injection", coord.ErrUnavailable)
	}
	return nil
}

// Get implements coord.Conn.
func (c *Conn) Get(ctx context.Context, path string) ([]byte, coord.Version, error) {
	if err := c.lock(ctx, path); err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", path, err)
	}
	defer c.srv.mu.Unlock()
	n, ok := c.srv.nodes[path]
	if !ok {
		return nil, 0, fmt.Errorf("get %s: %w", path, coord.ErrNoNode)
	}
	return slices.Clone(n.data), n.version, nil
}

// Create implements coord.Conn.
func (c *Conn) Create(ctx context.Context, path string, data []byte) (coord.Version, error) {
	_, err := c.create(ctx, "create", path, data, false, false)
	return 0, err
}

// CreateEphemeral implements coord.Conn.
func (c *Conn) CreateEphemeral(ctx context.Context, path string, data []byte) error {
	_, err := c.create(ctx, "create ephemeral", path, data, true, false)
	return err
}

// CreateEphemeralSequential implements coord.Conn.
func (c *Conn) CreateEphemeralSequential(ctx context.Context, prefix string, data []byte) (string, error) {
	return c.create(ctx, "create sequential", prefix, data, true, true)
}

func (c *Conn) create(ctx context.Context, op, path string, data []byte, ephemeral, sequential bool) (string, error) {
	check := path
	if sequential {
		check += "0000000000" // the prefix may end in "/"
	}
	if path == "/" && !sequential {
		return "", fmt.Errorf("%s %s: %w", op, path, coord.ErrNodeExists)
	}
	if err := c.lock(ctx, check); err != nil {
		return "", fmt.Errorf("%s %s: %w", op, path, err)
	}
	defer c.srv.mu.Unlock()
	var owner int64
	if ephemeral {
		owner = c.id
	}
	full, err := c.srv.create(path, data, owner, sequential)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", op, path, err)
	}
	return full, nil
}

// Update implements coord.Conn.
func (c *Conn) Update(ctx context.Context, path string, data []byte, v coord.Version) (coord.Version, error) {
	if err := c.lock(ctx, path); err != nil {
		return 0, fmt.Errorf("update %s: %w", path, err)
	}
	defer c.srv.mu.Unlock()
	nv, err := c.srv.update(path, data, v)
	if err != nil {
		return 0, fmt.Errorf("update %s (version %d): %w", path, v, err)
	}
	return nv, nil
}

// Delete implements coord.Conn.
func (c *Conn) Delete(ctx context.Context, path string, v coord.Version) error {
	if err := c.lock(ctx, path); err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	defer c.srv.mu.Unlock()
	if err := c.srv.remove(path, v); err != nil {
		return fmt.Errorf("delete %s (version %d): %w", path, v, err)
	}
	return nil
}

// Children implements coord.Conn.
func (c *Conn) Children(ctx context.Context, path string) ([]string, error) {
	if err := c.lock(ctx, path); err != nil {
		return nil, fmt.Errorf("children %s: %w", path, err)
	}
	defer c.srv.mu.Unlock()
	n, ok := c.srv.nodes[path]
	if !ok {
		return nil, fmt.Errorf("children %s: %w", path, coord.ErrNoNode)
	}
	return sortedNames(n), nil
}

// Watch implements coord.Conn.
func (c *Conn) Watch(ctx context.Context, path string) (coord.WatchData, <-chan coord.WatchData, error) {
	w := &watch{conn: c, path: path, data: make(chan coord.WatchData, 1)}
	n, err := c.subscribe(ctx, w)
	if err != nil {
		return coord.WatchData{}, nil, fmt.Errorf("watch %s: %w", path, err)
	}
	defer c.srv.mu.Unlock()
	return coord.WatchData{Data: slices.Clone(n.data), Version: n.version}, w.data, nil
}

// WatchChildren implements coord.Conn.
func (c *Conn) WatchChildren(ctx context.Context, path string) ([]string, <-chan coord.ChildrenData, error) {
	w := &watch{conn: c, path: path, kids: make(chan coord.ChildrenData, 1)}
	n, err := c.subscribe(ctx, w)
	if err != nil {
		return nil, nil, fmt.Errorf("watch children %s: %w", path, err)
	}
	defer c.srv.mu.Unlock()
	return sortedNames(n), w.kids, nil
}

// subscribe registers w on its node and starts the goroutine that ends it
// with ctx. On success the server lock is still held, so the caller reads
// the current value before any change can be delivered.
func (c *Conn) subscribe(ctx context.Context, w *watch) (*znode, error) {
	if err := c.lock(ctx, w.path); err != nil {
		return nil, err
	}
	n, ok := c.srv.nodes[w.path]
	if !ok {
		c.srv.mu.Unlock()
		return nil, coord.ErrNoNode
	}
	w.done = make(chan struct{})
	n.watches[w] = struct{}{}
	c.watches[w] = struct{}{}
	go func() {
		select {
		case <-ctx.Done():
			c.srv.mu.Lock()
			w.finish(c.srv, nil)
			c.srv.mu.Unlock()
		case <-w.done:
		}
	}()
	return n, nil
}

// SessionDone implements coord.Conn.
func (c *Conn) SessionDone() <-chan struct{} { return c.session.Done() }

// SessionTimeout is the timeout Lease reports. A memcoord session never
// expires by itself (see ExpireSession); a test that expires one to stand
// for a silent client should do so only this long after it went silent.
const SessionTimeout = 10 * time.Second

// Lease implements coord.Conn. Calls never block, so a reachable session is
// confirmed as of now; a cut-off one as of the moment it was cut off.
func (c *Conn) Lease() coord.SessionLease {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	switch {
	case c.closed, c.unavailable && c.cutAt.IsZero():
		return coord.SessionLease{}
	case c.unavailable:
		return coord.SessionLease{Session: c.id, Sent: c.cutAt, Timeout: SessionTimeout}
	}
	return coord.SessionLease{Session: c.id, Sent: time.Now(), Timeout: SessionTimeout}
}

// Close implements coord.Conn: the session ends, its ephemeral nodes are
// deleted and open watches end with coord.ErrClosed.
func (c *Conn) Close() error {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	for w := range c.watches {
		w.finish(c.srv, coord.ErrClosed)
	}
	c.session.Close()
	c.srv.removeEphemerals(c.id)
	return nil
}
