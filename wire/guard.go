package wire

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"storj.io/drpc/drpcwire"
)

// guardedListener caps the open connections and wraps each in a guardedConn.
type guardedListener struct {
	net.Listener
	opts   ServerOptions
	sem    chan struct{} // one token per open connection
	budget *byteBudget
	full   bool // the last accept found no room; only Accept uses it
}

func newGuardedListener(lis net.Listener, opts ServerOptions) *guardedListener {
	return &guardedListener{Listener: lis, opts: opts, sem: make(chan struct{}, opts.MaxConns), budget: newByteBudget(int64(opts.MaxBufferedBytes))}
}

func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			l.full = false
			gc := newGuardedConn(c, l.opts, l.budget, func() { <-l.sem })
			if l.opts.TLS != nil {
				// The guard follows the frames inside TLS; the handshake
				// happens on the first read, within the handshake timeout.
				gc.tls = tls.Server(c, l.opts.TLS)
				gc.Conn = gc.tls
			}
			return gc, nil
		default:
			// Refuse at once rather than leave the peer waiting in the
			// backlog: it sees the connection close and can try elsewhere.
			if !l.full {
				l.opts.Logger.Warn("connection limit reached; refusing new connections", "addr", l.Addr().String(), "limit", l.opts.MaxConns)
				l.full = true
			}
			_ = c.Close()
		}
	}
}

// byteBudget is a listener's allowance for the bytes of large messages its
// connections buffer.
type byteBudget struct {
	mu    sync.Mutex
	free  int64
	freed chan struct{} // closed and replaced whenever bytes come back
}

func newByteBudget(n int64) *byteBudget { return &byteBudget{free: n, freed: make(chan struct{})} }

// take waits until n bytes are free and takes them; false if that did not
// happen by deadline.
func (b *byteBudget) take(n int64, deadline time.Time) bool {
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return true
		}
		freed := b.freed
		b.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-freed:
			t.Stop()
		case <-t.C:
			return false
		}
	}
}

func (b *byteBudget) give(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.free += n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// maxFrameHeader is the longest frame header: a control byte and three
// varints (stream id, message id, data length).
const maxFrameHeader = 1 + 3*binaryMaxVarintLen64

const binaryMaxVarintLen64 = 10

// guardedConn follows the dRPC frames its peer sends to enforce the
// listener's limits before dRPC buffers anything: a frame larger than
// maxFrameBytes or a message larger than MaxMessageBytes cuts the
// connection at its header, and a message past freeMessageBytes needs the
// listener's budget for the rest. Read deadlines bound how long reads wait
// for the first frame, and for the next bytes of a message once begun.
// Between messages there is no read deadline: an idle call is legitimate,
// and dRPC's inactivity timeout closes a connection idle between calls.
type guardedConn struct {
	net.Conn
	opts   ServerOptions
	budget *byteBudget

	// Read-side state, used only by the one goroutine dRPC reads with.
	handshakeBy time.Time // zero once the first frame arrived
	hdr         [maxFrameHeader]byte
	hdrLen      int    // header bytes of the current frame seen so far
	remaining   uint64 // data bytes of the current frame still to come
	frameDone   bool   // the current frame ends its message
	// frameWaited is how long reads waited for the current frame's bytes:
	// only the peer's slowness counts, not the time the reader was held up
	// by the handler between reads.
	frameWaited  time.Duration
	readDeadline time.Time // the deadline last set
	msgID        drpcwire.ID
	msgBytes     uint64
	// dRPC keeps its packet buffer as large as the largest recent message
	// until more than 10 messages in a row used under a quarter of it;
	// largest and smallRun follow that, so the budget taken for a large
	// message is given back only when dRPC lets go of the memory.
	largest  uint64
	smallRun int
	err      error

	// tls is the connection's TLS layer (Conn itself) when the listener
	// serves TLS.
	tls *tls.Conn

	mu      sync.Mutex // guards held and closed against Close
	held    int64      // budget taken
	closed  bool
	release func()
}

// freeMessageBytes of each message need no budget: ordinary batches never
// wait for it.
const freeMessageBytes = 1 << 20

func newGuardedConn(c net.Conn, opts ServerOptions, budget *byteBudget, release func()) *guardedConn {
	return &guardedConn{Conn: c, opts: opts, budget: budget, release: release, handshakeBy: time.Now().Add(opts.HandshakeTimeout)}
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		c.budget.give(c.held)
		c.held = 0
		c.release()
	}
	c.mu.Unlock()
	return err
}

// hold makes sure the budget covers n buffered bytes beyond the free ones,
// waiting for it no longer than the frame timeout.
func (c *guardedConn) hold(n uint64) error {
	need := int64(n) - freeMessageBytes
	c.mu.Lock()
	need -= c.held
	c.mu.Unlock()
	if need <= 0 {
		return nil
	}
	if !c.budget.take(need, time.Now().Add(c.opts.FrameTimeout)) {
		return fmt.Errorf("server busy: its %d bytes for large messages stayed taken for %v", c.opts.MaxBufferedBytes, c.opts.FrameTimeout)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		c.budget.give(need)
		return net.ErrClosed
	}
	c.held += need
	return nil
}

// endMessage follows dRPC's packet buffer after a message of n bytes.
func (c *guardedConn) endMessage(n uint64) {
	if n < c.largest/4 {
		c.smallRun++
	} else {
		c.smallRun = 0
	}
	c.largest = max(c.largest, n)
	if c.smallRun > 10 {
		c.largest, c.smallRun = 0, 0
		c.mu.Lock()
		c.budget.give(c.held)
		c.held = 0
		c.mu.Unlock()
	}
}

func (c *guardedConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	now := time.Now()
	inMessage := c.hdrLen > 0 || c.remaining > 0 || c.msgBytes > 0
	var deadline time.Time
	switch {
	case !c.handshakeBy.IsZero():
		deadline = c.handshakeBy
	case inMessage:
		deadline = now.Add(c.opts.FrameTimeout - c.frameWaited)
	}
	if !deadline.Equal(c.readDeadline) {
		if err := c.Conn.SetReadDeadline(deadline); err != nil {
			return 0, err
		}
		c.readDeadline = deadline
	}
	n, err := c.Conn.Read(p)
	if inMessage {
		c.frameWaited += time.Since(now)
	}
	if err != nil && c.tls != nil && !c.tls.ConnectionState().HandshakeComplete {
		return 0, c.cut(fmt.Errorf("TLS handshake: %w", err))
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		what := "the rest of a message begun"
		if !c.handshakeBy.IsZero() {
			what = "the first frame"
		}
		err = c.cut(fmt.Errorf("%s did not arrive in time: %w", what, err))
	}
	if n > 0 {
		if ferr := c.follow(p[:n]); ferr != nil {
			return 0, c.cut(ferr)
		}
	}
	return n, err
}

func (c *guardedConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// cut records why the connection is being closed, logs it and returns it.
func (c *guardedConn) cut(err error) error {
	c.err = fmt.Errorf("peer %s: %w", c.RemoteAddr(), err)
	c.opts.Logger.Warn("closing connection", "local", c.LocalAddr().String(), "peer", c.RemoteAddr().String(), "err", err)
	return c.err
}

// follow advances the frame state over b, the next bytes from the peer.
func (c *guardedConn) follow(b []byte) error {
	for len(b) > 0 {
		if c.remaining > 0 {
			k := min(uint64(len(b)), c.remaining)
			c.remaining -= k
			b = b[k:]
			if c.remaining == 0 {
				c.endFrame()
			}
			continue
		}
		if c.hdrLen == 0 {
			c.frameWaited = 0
		}
		c.hdr[c.hdrLen] = b[0]
		c.hdrLen++
		b = b[1:]
		fr, length, ok, err := parseFrameHeader(c.hdr[:c.hdrLen])
		switch {
		case err != nil:
			return err
		case !ok && c.hdrLen == len(c.hdr):
			return errors.New("malformed frame header")
		case !ok:
			continue
		}
		if length > maxFrameBytes {
			return fmt.Errorf("frame of %d bytes, limit %d", length, maxFrameBytes)
		}
		if fr.ID != c.msgID {
			// dRPC drops an unfinished message when another begins.
			if c.msgBytes > 0 {
				c.endMessage(c.msgBytes)
			}
			c.msgID, c.msgBytes = fr.ID, 0
		}
		c.msgBytes += length
		if c.msgBytes > uint64(c.opts.MaxMessageBytes) {
			return fmt.Errorf("message of over %d bytes, limit %d", c.msgBytes, c.opts.MaxMessageBytes)
		}
		if err := c.hold(max(c.msgBytes, c.largest)); err != nil {
			return err
		}
		c.hdrLen, c.remaining, c.frameDone = 0, length, fr.Done
		if length == 0 {
			c.endFrame()
		}
	}
	return nil
}

func (c *guardedConn) endFrame() {
	c.handshakeBy = time.Time{}
	if c.frameDone {
		c.endMessage(c.msgBytes)
		c.msgBytes = 0
	}
}

// parseFrameHeader decodes a dRPC frame header (drpcwire.ParseFrame's
// layout) from the start of b; ok is false while b is too short.
func parseFrameHeader(b []byte) (fr drpcwire.Frame, length uint64, ok bool, err error) {
	if len(b) < 4 {
		return fr, 0, false, nil
	}
	control := b[0]
	fr.Done = control&0b00000001 != 0
	rem := b[1:]
	if rem, fr.ID.Stream, ok, err = drpcwire.ReadVarint(rem); !ok || err != nil {
		return fr, 0, false, err
	}
	if rem, fr.ID.Message, ok, err = drpcwire.ReadVarint(rem); !ok || err != nil {
		return fr, 0, false, err
	}
	if _, length, ok, err = drpcwire.ReadVarint(rem); !ok || err != nil {
		return fr, 0, false, err
	}
	return fr, length, true, nil
}
