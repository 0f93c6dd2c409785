package zkcoord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/internal/notify"
)

// DefaultSessionTimeout is the session timeout when Options leave it zero.
const DefaultSessionTimeout = 10 * time.Second

// Options configure Dial. The zero value is usable.
type Options struct {
	// SessionTimeout is asked of the server, which clamps it to its bounds
	// (zklocal allows 1 s to 60 s); 0 means DefaultSessionTimeout. The server
	// expires a silent client's session after this long; the client declares
	// its session in doubt after two thirds of it at the latest.
	SessionTimeout time.Duration
	// Logger receives session events (info, warn) and the ZooKeeper client
	// library's own messages (debug). nil means slog.Default().
	Logger *slog.Logger
	// FailFast makes Dial give up as soon as every server has refused the
	// connection (nothing listens there), instead of retrying until its
	// context ends: right for a command a person waits on, not for a daemon
	// that may start before ZooKeeper does.
	FailFast bool
	// Auth, when set, is presented to the server before any other request,
	// on every connection and session: the Conn acts as that identity.
	Auth Auth
	// ACL is the access list of every node the Conn creates (chroot and
	// missing parents included): ACLOpen, the zero value, lets anyone do
	// anything; ACLCreator and ACLRead need Auth.
	ACL coord.ACLMode
}

// Conn is a coord.Conn on ZooKeeper. It reconnects by itself; a session the
// server expired is replaced by a new one (SessionDone tells). The zero
// value is not usable; call Dial.
type Conn struct {
	zk      *zk.Conn
	servers string
	chroot  string // "" or "/a/b", prefixed to every path
	timeout time.Duration
	auth    Auth
	acl     []zk.ACL // of every node created
	log     *slog.Logger
	net     *netFaults
	hosts   *hostList
	session *notify.Session

	first     chan struct{} // closed at the first session
	firstOnce sync.Once
	closed    atomic.Bool
	closeOnce sync.Once
	// lease is the newest confirmation of the session (renewLease).
	lease     atomic.Pointer[coord.SessionLease]
	stop      chan struct{} // closed by Close: renewLease returns
	renewDone chan struct{}
}

var _ coord.ACLConn = (*Conn)(nil)

// Dial connects to the ZooKeeper ensemble servers ("host:port,host:port",
// optionally followed by a chroot path "/prefix" that is created if missing)
// and waits for a session. If no server gives one before ctx ends (or, with
// Options.FailFast, once every server refused the connection) it gives up
// (the ZooKeeper client alone would retry forever) and returns an error
// matching coord.ErrUnavailable that names the servers and the last dial
// error. A malformed servers string, or an ACL mode without Auth, gives
// coord.ErrInvalid.
func Dial(ctx context.Context, servers string, opts Options) (*Conn, error) {
	hosts, chroot, err := parseServers(servers)
	if err != nil {
		return nil, err
	}
	list, err := acl(opts.ACL, opts.Auth)
	if err != nil {
		return nil, fmt.Errorf("zookeeper %s: %w", servers, err)
	}
	c := &Conn{
		servers:   servers,
		chroot:    chroot,
		timeout:   opts.SessionTimeout,
		auth:      opts.Auth,
		acl:       list,
		log:       opts.Logger,
		net:       &netFaults{},
		hosts:     &hostList{},
		session:   notify.NewSession(),
		first:     make(chan struct{}),
		stop:      make(chan struct{}),
		renewDone: make(chan struct{}),
	}
	if c.timeout <= 0 {
		c.timeout = DefaultSessionTimeout
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	var refused <-chan struct{}
	if opts.FailFast {
		refused = c.net.watchRefusals(len(hosts))
	}
	zc, _, err := zk.Connect(hosts, c.timeout,
		zk.WithDialer(c.net.dial),
		zk.WithHostProvider(c.hosts),
		zk.WithLogger(zkLogger{c.log}),
		zk.WithLogInfo(false),
		zk.WithEventCallback(c.onEvent))
	if err != nil {
		return nil, &unreachableError{servers: servers, cause: err}
	}
	c.zk = zc
	select {
	case <-c.first:
	case <-refused:
		zc.Close()
		return nil, &unreachableError{servers: servers, cause: c.net.lastError()}
	case <-ctx.Done():
		zc.Close()
		cause := c.net.lastError()
		if cause == nil {
			cause = ctx.Err()
		}
		return nil, &unreachableError{servers: servers, cause: cause, ctxErr: ctx.Err()}
	}
	go c.renewLease()
	if !opts.Auth.IsZero() {
		if err := c.addAuth(ctx, opts.Auth); err != nil {
			c.Close()
			return nil, fmt.Errorf("zookeeper %s: authenticate as %s: %w", servers, opts.Auth.User, err)
		}
	}
	if chroot != "" {
		if err := c.ensurePath(ctx, chroot); err != nil {
			c.Close()
			return nil, fmt.Errorf("zookeeper %s: create chroot: %w", servers, err)
		}
	}
	return c, nil
}

// parseServers splits "h1:p1,h2:p2/chroot" into hosts and chroot.
func parseServers(servers string) (hosts []string, chroot string, err error) {
	list := servers
	if i := strings.IndexByte(servers, '/'); i >= 0 {
		list, chroot = servers[:i], servers[i:]
		if err := coord.ValidatePath(chroot); err != nil {
			return nil, "", fmt.Errorf("zookeeper %q: chroot: %w", servers, err)
		}
		if chroot == "/" {
			chroot = ""
		}
	}
	for _, h := range strings.Split(list, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return nil, "", fmt.Errorf("%w: zookeeper %q: no server", coord.ErrInvalid, servers)
	}
	return hosts, chroot, nil
}

// onEvent follows the client's session state. The client calls it from its
// connection loop, so it must not block.
func (c *Conn) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	switch ev.State {
	case zk.StateHasSession:
		c.session.Up()
		c.firstOnce.Do(func() { close(c.first) })
		c.log.Info("zookeeper session established", "server", ev.Server, "session", fmt.Sprintf("0x%x", c.net.sessionID()))
	case zk.StateDisconnected, zk.StateExpired:
		if c.session.Down() && !c.closed.Load() {
			c.log.Warn("zookeeper session in doubt", "state", ev.State.String(), "server", ev.Server)
		}
		if ev.State == zk.StateExpired {
			// The server answered, only not for the old session: ask it for
			// a new one right away instead of pausing as after a failure.
			c.hosts.Connected()
			c.log.Warn("zookeeper session expired, starting a new one", "server", ev.Server)
		}
	}
}

// zkLogger routes the ZooKeeper client's log lines to slog at debug.
type zkLogger struct{ log *slog.Logger }

func (l zkLogger) Printf(format string, args ...any) {
	l.log.Debug("zookeeper client", "event", fmt.Sprintf(format, args...))
}

// call runs one ZooKeeper request so that ctx can end the wait: the client's
// calls take no context. fn may outlive call, so it must hand everything back
// through its results, never through captured variables. The goroutine it starts ends when the client
// answers, which it always does: with the reply, or with an error once the
// connection drops or the Conn closes. A request is not even queued while
// there is no session, so it cannot run long after its caller gave up.
func call[T any](ctx context.Context, c *Conn, fn func() (T, error)) (T, error) {
	var zero T
	if err := coord.ContextError(ctx); err != nil {
		return zero, err
	}
	if c.closed.Load() {
		return zero, coord.ErrClosed
	}
	if st := c.zk.State(); st != zk.StateHasSession {
		return zero, fmt.Errorf("%w: no zookeeper session (%s)", coord.ErrUnavailable, st)
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		if r.err != nil && c.closed.Load() {
			return zero, coord.ErrClosed
		}
		return r.v, convert(r.err)
	case <-ctx.Done():
		return zero, coord.ContextError(ctx)
	}
}

// full validates path and maps it into the chroot.
func (c *Conn) full(path string) (string, error) {
	if err := coord.ValidatePath(path); err != nil {
		return "", err
	}
	return c.root(path), nil
}

// root maps a path into the chroot.
func (c *Conn) root(path string) string {
	if c.chroot != "" && path == "/" {
		return c.chroot
	}
	return c.chroot + path
}

// Get implements coord.Conn.
func (c *Conn) Get(ctx context.Context, path string) ([]byte, coord.Version, error) {
	full, err := c.full(path)
	if err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", path, err)
	}
	got, err := call(ctx, c, func() (coord.WatchData, error) {
		data, stat, err := c.zk.Get(full)
		if err != nil {
			return coord.WatchData{}, err
		}
		return coord.WatchData{Data: data, Version: coord.Version(stat.Version)}, nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", path, err)
	}
	return got.Data, got.Version, nil
}

// Create implements coord.Conn.
func (c *Conn) Create(ctx context.Context, path string, data []byte) (coord.Version, error) {
	_, err := c.create(ctx, "create", path, path, data, zk.FlagPersistent)
	return 0, err
}

// CreateEphemeral implements coord.Conn.
func (c *Conn) CreateEphemeral(ctx context.Context, path string, data []byte) error {
	_, err := c.create(ctx, "create ephemeral", path, path, data, zk.FlagEphemeral)
	return err
}

// CreateEphemeralSequential implements coord.Conn.
func (c *Conn) CreateEphemeralSequential(ctx context.Context, prefix string, data []byte) (string, error) {
	// The prefix may end in "/"; the name with its suffix must be valid.
	return c.create(ctx, "create sequential", prefix, prefix+"0000000000", data, zk.FlagEphemeralSequential)
}

// create creates path (check is the path to validate), making missing
// parents first, and returns the created path outside the chroot.
func (c *Conn) create(ctx context.Context, op, path, check string, data []byte, flags int32) (string, error) {
	err := coord.ValidatePath(check)
	if err == nil && check == "/" {
		err = coord.ErrNodeExists
	}
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", op, path, err)
	}
	full := c.root(path)
	created, err := c.zkCreate(ctx, full, data, flags)
	if errors.Is(err, coord.ErrNoNode) {
		if parent, _ := coord.ParentPath(full); parent != "/" {
			err = c.ensurePath(ctx, parent)
		}
		if err == nil {
			created, err = c.zkCreate(ctx, full, data, flags)
		}
	}
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", op, path, err)
	}
	return strings.TrimPrefix(created, c.chroot), nil
}

func (c *Conn) zkCreate(ctx context.Context, full string, data []byte, flags int32) (string, error) {
	return call(ctx, c, func() (string, error) {
		return c.zk.Create(full, data, flags, c.acl)
	})
}

// ensurePath creates the persistent node full (outside any chroot) and its
// missing ancestors, with empty data.
func (c *Conn) ensurePath(ctx context.Context, full string) error {
	for i := 1; i <= len(full); i++ {
		if i < len(full) && full[i] != '/' {
			continue
		}
		_, err := c.zkCreate(ctx, full[:i], nil, zk.FlagPersistent)
		if err != nil && !errors.Is(err, coord.ErrNodeExists) {
			return err
		}
	}
	return nil
}

// zkVersion converts a coord version to ZooKeeper's 32-bit one.
func zkVersion(v coord.Version) (int32, error) {
	if v < coord.AnyVersion || v > math.MaxInt32 {
		return 0, fmt.Errorf("%w: version %d", coord.ErrInvalid, v)
	}
	return int32(v), nil
}

// Update implements coord.Conn.
func (c *Conn) Update(ctx context.Context, path string, data []byte, v coord.Version) (coord.Version, error) {
	full, err := c.full(path)
	if err != nil {
		return 0, fmt.Errorf("update %s: %w", path, err)
	}
	zv, err := zkVersion(v)
	if err != nil {
		return 0, fmt.Errorf("update %s: %w", path, err)
	}
	nv, err := call(ctx, c, func() (coord.Version, error) {
		stat, err := c.zk.Set(full, data, zv)
		if err != nil {
			return 0, err
		}
		return coord.Version(stat.Version), nil
	})
	if err != nil {
		return 0, fmt.Errorf("update %s (version %d): %w", path, v, err)
	}
	return nv, nil
}

// Delete implements coord.Conn.
func (c *Conn) Delete(ctx context.Context, path string, v coord.Version) error {
	full, err := c.full(path)
	if err == nil && path == "/" {
		err = fmt.Errorf("%w: the root cannot be deleted", coord.ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	zv, err := zkVersion(v)
	if err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	_, err = call(ctx, c, func() (struct{}, error) {
		return struct{}{}, c.zk.Delete(full, zv)
	})
	if err != nil {
		return fmt.Errorf("delete %s (version %d): %w", path, v, err)
	}
	return nil
}

// Children implements coord.Conn.
func (c *Conn) Children(ctx context.Context, path string) ([]string, error) {
	full, err := c.full(path)
	if err != nil {
		return nil, fmt.Errorf("children %s: %w", path, err)
	}
	names, err := call(ctx, c, func() ([]string, error) {
		names, _, err := c.zk.Children(full)
		return names, err
	})
	if err != nil {
		return nil, fmt.Errorf("children %s: %w", path, err)
	}
	slices.Sort(names)
	return names, nil
}

// SessionDone implements coord.Conn. It closes when the client loses its
// connection (it may then resume the same session, but nobody can tell yet)
// and when the session expires.
func (c *Conn) SessionDone() <-chan struct{} { return c.session.Done() }

// Close implements coord.Conn. It may take up to a second when the server
// is unreachable (the client tries to say goodbye).
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.session.Close()
		close(c.stop)
		c.zk.Close()
		<-c.renewDone
		c.log.Info("zookeeper connection closed", "servers", c.servers)
	})
	return nil
}

// lost is the error ending a watch when the session goes.
func (c *Conn) lost() error {
	if c.closed.Load() {
		return coord.ErrClosed
	}
	return coord.ErrSessionLost
}
