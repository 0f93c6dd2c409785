package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/wire"
)

// Errors returned by the client; match them with errors.Is.
var (
	// ErrNotFound: Get found no value for the key.
	ErrNotFound = wire.ErrNotFound
	// ErrInvalidArgument: the key or value is empty or too large; nothing was written.
	ErrInvalidArgument = wire.ErrInvalidArgument
	// ErrUnavailable: the cluster could not serve the call in time, whatever
	// the part that failed: ZooKeeper unreachable or its session lost, no
	// coordinator answering, a group with no primary, a node that refused
	// the connection or did not answer before the deadline. Retrying later
	// may succeed; a Put or Delete that failed so may have been applied.
	ErrUnavailable = wire.ErrUnavailable
	// ErrCorrupt: the node found the stored record corrupted and returned no data.
	ErrCorrupt = wire.ErrCorrupt
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("client closed")
)

// DefaultTimeout bounds an operation when neither its context nor
// Options.Timeout does. A failover with the default 6 s ZooKeeper session
// timeout takes 6–7 s; 10 s lets the operations caught in one retry on the
// new primary and succeed.
const DefaultTimeout = 10 * time.Second

// MaxKeySize is the largest key the cluster accepts (1 to 4096 bytes).
const MaxKeySize = 4096

// MaxValueSize is the largest value any node can be configured to accept;
// each node checks its own, smaller limit. A larger value is refused here,
// before it could push a batch past the message bound of a node's port
// and cost every request sharing that batch its connection.
const MaxValueSize = 32 << 20

// RouteSource tells New where slots live. coord.Cluster reads the routes
// straight from ZooKeeper (Dial uses one); CoordinatorRoutes asks the
// coordinators.
type RouteSource interface {
	Routes(ctx context.Context) (*coord.RouteTable, error)
}

// Options configure a Client. The zero value is usable.
type Options struct {
	// Timeout bounds each operation whose context has no deadline; 0 →
	// DefaultTimeout. Keep it above the cluster's failover time (the
	// ZooKeeper session timeout plus about a second), or a failover can
	// surface as ErrUnavailable.
	Timeout time.Duration
	// StreamsPerNode is how many long-lived streams carry requests to one
	// node; 0 → 1. One stream makes the largest batches (fewest system calls
	// per request); more let a node decode batches in parallel.
	StreamsPerNode int
	// DialTimeout bounds one connection attempt; 0 → 2s.
	DialTimeout time.Duration
	// TLS, when set, makes every connection to the nodes mutual TLS
	// (tlsauth.Certs.ClientConfig); nil dials plain TCP.
	TLS *tls.Config
	// ReadFrom says which members answer Get: ReadPrimary (the zero value,
	// linearizable), ReadSecondary or ReadAny (spread over the group's
	// members; a secondary may return a stale value or miss a recent write).
	ReadFrom ReadFrom
	// Logger receives one line per routing change and per connection the
	// keepalive closes, and with Dial the ZooKeeper session's events; nil →
	// nothing is logged. The client never writes to the default logger.
	Logger *slog.Logger
	// FailFast makes Dial give up as soon as every ZooKeeper server refused
	// the connection (nothing listens there) instead of retrying until ctx
	// ends: right for a command a person waits on, not for a service that
	// may start before ZooKeeper does.
	FailFast bool
	// ZooKeeperAuth is the identity Dial presents to ZooKeeper when the
	// cluster's znodes have access lists (docs/security.md); the zero value
	// connects without credentials.
	ZooKeeperAuth zkcoord.Auth
}

// ReadFrom selects the members that serve reads.
type ReadFrom int

const (
	// ReadPrimary reads from the group's primary: linearizable.
	ReadPrimary ReadFrom = iota
	// ReadSecondary reads from a secondary, falling back to the primary when
	// the group has none; reads may be stale.
	ReadSecondary
	// ReadAny reads from any member, primary included; reads may be stale.
	ReadAny
)

// ParseReadFrom parses "primary", "secondary" or "any".
func ParseReadFrom(s string) (ReadFrom, error) {
	switch s {
	case "primary", "":
		return ReadPrimary, nil
	case "secondary":
		return ReadSecondary, nil
	case "any":
		return ReadAny, nil
	}
	return 0, fmt.Errorf("%w: read-from %q: want primary, secondary or any", ErrInvalidArgument, s)
}

// Client is a ThunderYurts client, safe for concurrent use. It caches the
// slot table, sends each request to the owning group's primary, and on a
// "moved" answer or a broken connection refreshes the table and retries
// until the operation's deadline.
type Client struct {
	cfg    Options
	source RouteSource
	routes atomic.Pointer[coord.RouteTable]
	// release frees what Dial opened for the client (its ZooKeeper
	// session); nil for New.
	release func() error

	// id and writes tag every put and delete: the client's random id and
	// the write's number, the same on every retry of it, so a primary
	// answers a retry whose first attempt reached the log with that
	// attempt's outcome instead of writing it again (docs/replication.md,
	// "Idempotent writes").
	id     uint64
	writes atomic.Uint64

	reads atomic.Uint64 // spreads stale reads over members

	refreshMu   sync.Mutex
	lastRefresh time.Time

	pipesMu sync.Mutex
	pipes   map[string]*pipe
	dialing map[string]*dial
	// silent holds the nodes whose last pipe the keepalive closed; the next
	// pipe to one starts suspect.
	silent map[string]bool
	closed bool

	suspects chan struct{} // wakes watch: a pipe became suspect
	stop     context.CancelFunc
	bg       sync.WaitGroup
}

// Dial connects to the cluster named cluster ("" → "default") through the
// ZooKeeper ensemble zkServers ("host:port[,host:port...][/chroot]") and
// returns a client that has read the routes once. Close releases everything
// it opened. It fails with an error matching ErrUnavailable when ZooKeeper
// gives no session or the routes cannot be read before ctx ends, and with
// ErrInvalidArgument when zkServers or cluster is malformed.
func Dial(ctx context.Context, zkServers, cluster string, opts Options) (*Client, error) {
	log := orDiscard(opts.Logger)
	if cluster == "" {
		cluster = "default"
	}
	zopts := zkcoord.Options{Logger: log, FailFast: opts.FailFast, Auth: opts.ZooKeeperAuth}
	if !zopts.Auth.IsZero() {
		zopts.ACL = coord.ACLCreator // a chroot it creates is not left open
	}
	conn, err := zkcoord.Dial(ctx, zkServers, zopts)
	if err != nil {
		return nil, edgeError(err)
	}
	c, err := New(ctx, coord.NewCluster(conn, cluster).WithLogger(log), opts)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	c.release = conn.Close
	return c, nil
}

// New returns a client that reads its routes from routes and has read them
// once; it fails, with an error matching ErrUnavailable, if they cannot be
// read within ctx. Dial is the usual way in; New serves a caller that has a
// route source of its own (CoordinatorRoutes, or a coord.Cluster it keeps
// using), which stays the caller's to close.
func New(ctx context.Context, routes RouteSource, opts Options) (*Client, error) {
	if routes == nil {
		return nil, fmt.Errorf("%w: client: no route source", ErrInvalidArgument)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.StreamsPerNode <= 0 {
		opts.StreamsPerNode = 1
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 2 * time.Second
	}
	opts.Logger = orDiscard(opts.Logger)
	c := &Client{cfg: opts, source: routes, id: newClientID(), pipes: make(map[string]*pipe), dialing: make(map[string]*dial),
		silent: make(map[string]bool), suspects: make(chan struct{}, 1)}
	rt, err := routes.Routes(ctx)
	if err != nil {
		return nil, fmt.Errorf("read routes: %w", edgeError(err))
	}
	c.routes.Store(rt)
	c.lastRefresh = time.Now()
	wctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	c.bg.Add(1)
	go func() { defer c.bg.Done(); c.watch(wctx) }()
	return c, nil
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

// newClientID returns a random client id; 0 means untagged.
func newClientID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}

// Close closes every connection, and the ZooKeeper session of a client
// made by Dial; calls in flight fail.
func (c *Client) Close() error {
	c.stop()
	c.bg.Wait()
	c.pipesMu.Lock()
	c.closed = true
	pipes := c.pipes
	c.pipes = nil
	c.pipesMu.Unlock()
	for _, p := range pipes {
		p.close(ErrClosed)
	}
	for _, p := range pipes {
		p.wait()
	}
	if c.release != nil {
		return c.release()
	}
	return nil
}

// Routes returns the route table the client currently uses.
func (c *Client) Routes() *coord.RouteTable { return c.routes.Load() }

// Get returns the value of key, or an error matching ErrNotFound.
func (c *Client) Get(ctx context.Context, key []byte) ([]byte, error) {
	resp, err := c.do(ctx, wire.Op_GET, key, nil)
	if err != nil {
		return nil, err
	}
	return resp.Value, nil
}

// Put stores value under key. When it returns nil the write is durable on
// the group's primary. A Put that fails with a timeout or lost connection
// may still have been applied, once: its retries carry its tag.
func (c *Client) Put(ctx context.Context, key, value []byte) error {
	_, err := c.do(ctx, wire.Op_PUT, key, value)
	return err
}

// Delete removes key; deleting an absent key succeeds.
func (c *Client) Delete(ctx context.Context, key []byte) error {
	_, err := c.do(ctx, wire.Op_DELETE, key, nil)
	return err
}

func opName(op wire.Op) string {
	switch op {
	case wire.Op_PUT:
		return "put"
	case wire.Op_DELETE:
		return "del"
	}
	return "get"
}

// ValidateKey rejects keys no node would accept (empty, or over MaxKeySize),
// without using the network; the error matches ErrInvalidArgument.
func ValidateKey(key []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: empty key", ErrInvalidArgument)
	}
	if len(key) > MaxKeySize {
		return fmt.Errorf("%w: key is %d bytes, the limit is %d", ErrInvalidArgument, len(key), MaxKeySize)
	}
	return nil
}

func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

func (c *Client) do(ctx context.Context, op wire.Op, key, value []byte) (*wire.Response, error) {
	fail := func(err error) error { return fmt.Errorf("%s %s: %w", opName(op), quoteKey(key), err) }
	if err := ValidateKey(key); err != nil {
		return nil, fail(err)
	}
	if len(value) > MaxValueSize {
		return nil, fail(fmt.Errorf("%w: value is %d bytes, no node accepts more than %d", ErrInvalidArgument, len(value), MaxValueSize))
	}
	// The request gets no context of its own while it goes well: its
	// deadline travels with the call and the pipe's sweeper enforces it (a
	// context per request, with its timer and its registration in the
	// caller's context, was a sixth of the load generator's CPU). Whatever
	// waits on the slow path (a refresh, a backoff, a dial) gets one.
	deadline, bounded := ctx.Deadline()
	if !bounded {
		deadline = time.Now().Add(c.cfg.Timeout)
	}
	var cancel context.CancelFunc
	defer func() {
		if cancel != nil {
			cancel()
		}
	}()
	bound := func() {
		if !bounded {
			ctx, cancel = context.WithDeadline(ctx, deadline)
			bounded = true
		}
	}
	stale := op == wire.Op_GET && c.cfg.ReadFrom != ReadPrimary
	var writeSeq uint64 // the tag's sequence number, one per call
	if op == wire.Op_PUT || op == wire.Op_DELETE {
		writeSeq = c.writes.Add(1)
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		if attempt > 0 { // every failed attempt has bound ctx already
			if err := c.backoff(ctx, attempt); err != nil {
				return nil, fail(fmt.Errorf("%w: %w (gave up: %w)", ErrUnavailable, lastErr, err))
			}
		}
		rt := c.routes.Load()
		slot := coord.SlotOf(key, len(rt.Table.Owners))
		g, ok := rt.GroupOf(slot)
		addr := g.PrimaryAddr
		if stale {
			addr = c.readAddr(g, attempt)
		}
		if !ok || addr == "" {
			bound()
			lastErr = fmt.Errorf("slot %d has no reachable primary (group %q)", slot, g.Name)
			c.refresh(ctx, rt.Table.Version)
			continue
		}
		// A request of its own per attempt: a pipe that failed this call
		// may still be sending the previous one (and setting its id). Each
		// carries the same tag, so the attempts take effect at most once.
		req := &wire.Request{Op: op, Key: key, Value: value, StaleOk: stale}
		if writeSeq != 0 {
			req.ClientId, req.ClientSeq = c.id, writeSeq
		}
		resp, err := c.send(ctx, addr, req, deadline)
		if err == nil {
			err = wire.ErrorOf(resp.Code, resp.Message, resp.OwnerGroup, resp.TableVersion)
		}
		if err != nil {
			bound()
		}
		switch {
		case err == nil:
			return resp, nil
		case errors.Is(err, errCallTimedOut), errors.Is(err, ctx.Err()) && ctx.Err() != nil:
			cause := ctx.Err()
			if cause == nil {
				cause = context.DeadlineExceeded
			}
			if lastErr != nil {
				// The deadline cut a retry short: what the earlier
				// attempts met is what the operator needs.
				return nil, fail(fmt.Errorf("%w: slot %d at %s (group %s): %w (before: %w)", ErrUnavailable, slot, addr, g.Name, cause, lastErr))
			}
			return nil, fail(fmt.Errorf("%w: slot %d at %s (group %s): %w", ErrUnavailable, slot, addr, g.Name, cause))
		case errors.Is(err, wire.ErrMoved):
			lastErr = fmt.Errorf("slot %d %w", slot, err)
			c.refresh(ctx, max(rt.Table.Version, resp.TableVersion-1))
		case errors.Is(err, wire.ErrNotPrimary), errors.Is(err, wire.ErrUnavailable), errors.Is(err, errPipeClosed), isDialError(err):
			lastErr = fmt.Errorf("slot %d at %s (group %s): %w", slot, addr, g.Name, err)
			c.refresh(ctx, rt.Table.Version)
		default:
			return nil, fail(err)
		}
	}
}

// readAddr picks the member that serves a stale read: spread over the
// candidates, moving to the next one on every retry.
func (c *Client) readAddr(g coord.GroupRoute, attempt int) string {
	var candidates []string
	for _, m := range g.Members {
		if m.Addr != "" && (c.cfg.ReadFrom == ReadAny || m.ID != g.Primary) {
			candidates = append(candidates, m.Addr)
		}
	}
	if len(candidates) == 0 {
		return g.PrimaryAddr
	}
	return candidates[(int(c.reads.Add(1))+attempt)%len(candidates)]
}

// send hands req to the pipe for addr, dialing one if needed.
func (c *Client) send(ctx context.Context, addr string, req *wire.Request, deadline time.Time) (*wire.Response, error) {
	p, err := c.pipe(ctx, addr, deadline)
	if err != nil {
		return nil, err
	}
	resp, err := p.do(ctx, req, deadline)
	switch {
	case err == nil:
	case p.closed():
		c.dropPipe(p)
	case errors.Is(err, context.DeadlineExceeded):
		// The node may be stopped or cut off: find out, and look for a
		// new primary meanwhile.
		p.markSuspect()
	}
	return resp, err
}

type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func isDialError(err error) bool {
	var de *dialError
	return errors.As(err, &de)
}

// pipe returns the pipe to addr, dialing it if needed. One dial per node
// runs at a time and others wait for it, but a node that does not answer
// never holds up requests to other nodes.
func (c *Client) pipe(ctx context.Context, addr string, deadline time.Time) (*pipe, error) {
	for {
		c.pipesMu.Lock()
		if c.closed {
			c.pipesMu.Unlock()
			return nil, ErrClosed
		}
		if p, ok := c.pipes[addr]; ok {
			if !p.closed() {
				c.pipesMu.Unlock()
				return p, nil
			}
			c.forgetLocked(p)
		}
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
		}
		if d, ok := c.dialing[addr]; ok {
			c.pipesMu.Unlock()
			select {
			case <-d.done:
				if d.err != nil {
					return nil, d.err
				}
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		d := &dial{done: make(chan struct{})}
		c.dialing[addr] = d
		cfg := pipeConfig{streams: c.cfg.StreamsPerNode, dial: wire.DialOptions{Timeout: c.cfg.DialTimeout, TLS: c.cfg.TLS},
			stuckAfter: c.cfg.Timeout, suspect: c.silent[addr], onSuspect: c.wakeWatch}
		c.pipesMu.Unlock()
		if cfg.suspect {
			// A node cut off by a partition does not refuse a dial, it
			// lets it hang: give it no longer than a ping, so the caller
			// soon re-reads the routes.
			cfg.dial.Timeout = min(cfg.dial.Timeout, silentAfter)
		}

		p, err := dialPipe(ctx, addr, cfg)
		c.pipesMu.Lock()
		delete(c.dialing, addr)
		switch {
		case err != nil:
			d.err = &dialError{err}
		case c.closed:
			p.close(ErrClosed)
			d.err = ErrClosed
		default:
			c.pipes[addr] = p
			delete(c.silent, addr)
		}
		c.pipesMu.Unlock()
		close(d.done)
		if d.err != nil {
			return nil, d.err
		}
		return p, nil
	}
}

// dial is a connection attempt in progress that other callers wait for.
type dial struct {
	done chan struct{}
	err  error
}

func (c *Client) dropPipe(p *pipe) {
	c.pipesMu.Lock()
	c.forgetLocked(p)
	c.pipesMu.Unlock()
	go p.wait()
}

// forgetLocked removes the closed pipe p, remembering whether its node went
// silent.
func (c *Client) forgetLocked(p *pipe) {
	if c.pipes[p.addr] == p {
		delete(c.pipes, p.addr)
		if p.silent() {
			c.silent[p.addr] = true
			c.cfg.Logger.Debug("node stopped answering; connection closed", "node", p.addr)
		}
	}
}

// refresh reloads the routes unless another caller already did since the
// table at seenVersion was read, or did so moments ago; so a burst of
// "moved" answers costs one read.
func (c *Client) refresh(ctx context.Context, seenVersion int64) {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	if cur := c.routes.Load(); cur.Table.Version > seenVersion || time.Since(c.lastRefresh) < 50*time.Millisecond {
		return
	}
	rt, err := c.source.Routes(ctx)
	c.lastRefresh = time.Now()
	if err != nil {
		c.cfg.Logger.Debug("route refresh failed", "err", err)
		return
	}
	old := c.routes.Swap(rt)
	if old.Table.Version != rt.Table.Version {
		c.cfg.Logger.Debug("routes refreshed", "from_version", old.Table.Version, "to_version", rt.Table.Version)
	}
	c.closeDeposed(rt)
}

// closeDeposed closes the suspect pipes to nodes that rt names as no
// group's primary: the requests waiting on them are retried on the new
// primary now rather than when the keepalive gives up.
func (c *Client) closeDeposed(rt *coord.RouteTable) {
	primaries := make(map[string]bool, len(rt.Groups))
	for _, g := range rt.Groups {
		primaries[g.PrimaryAddr] = true
	}
	c.pipesMu.Lock()
	defer c.pipesMu.Unlock()
	for addr, p := range c.pipes {
		if p.suspect.Load() && !primaries[addr] {
			p.close(fmt.Errorf("%s is suspect and no longer a primary", addr))
		}
	}
}

// suspectPoll is how often the routes are read while a pipe is suspect.
const suspectPoll = 100 * time.Millisecond

// watch reads the routes whenever a pipe becomes suspect, and then every
// suspectPoll while one is, until ctx ends: the requests caught on a node
// that stopped answering move as soon as the routes name its successor,
// even though none of them is retrying.
func (c *Client) watch(ctx context.Context) {
	for {
		select {
		case <-c.suspects:
		case <-ctx.Done():
			return
		}
		for {
			rctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
			c.refresh(rctx, c.routes.Load().Table.Version)
			cancel()
			if !c.anySuspect() {
				break
			}
			select {
			case <-time.After(suspectPoll):
			case <-ctx.Done():
				return
			}
		}
	}
}

// wakeWatch is every pipe's onSuspect.
func (c *Client) wakeWatch() {
	select {
	case c.suspects <- struct{}{}:
	default:
	}
}

func (c *Client) anySuspect() bool {
	c.pipesMu.Lock()
	defer c.pipesMu.Unlock()
	for _, p := range c.pipes {
		if p.suspect.Load() && !p.closed() {
			return true
		}
	}
	return false
}

// backoff waits before retry attempt n: short at first, since a moved slot
// is usually served right away, then up to 100 ms, so a client notices a
// new primary within a tenth of a second of it taking over.
func (c *Client) backoff(ctx context.Context, attempt int) error {
	d := time.Duration(1<<min(attempt, 8)) * 5 * time.Millisecond
	d = min(d, 100*time.Millisecond)
	return clock.Sleep(ctx, d)
}

// quoteKey renders a key for an error message, shortened so a 4 KiB key
// does not flood the operator's terminal.
func quoteKey(key []byte) string {
	const show = 64
	if len(key) > show {
		return fmt.Sprintf("%q… (%d bytes)", key[:show], len(key))
	}
	return fmt.Sprintf("%q", key)
}
