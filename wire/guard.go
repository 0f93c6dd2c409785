package wire

import (
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
	opts ServerOptions
	sem  chan struct{} // one token per open connection
	full bool          // the last accept found no room; only Accept uses it
}

func newGuardedListener(lis net.Listener, opts ServerOptions) *guardedListener {
	return &guardedListener{Listener: lis, opts: opts, sem: make(chan struct{}, opts.MaxConns)}
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
			return newGuardedConn(c, l.opts, func() { <-l.sem }), nil
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

// maxFrameHeader is the longest frame header: a control byte and three
// varints (stream id, message id, data length).
const maxFrameHeader = 1 + 3*binaryMaxVarintLen64

const binaryMaxVarintLen64 = 10

// guardedConn follows the dRPC frames its peer sends to enforce the
// listener's limits before dRPC buffers anything: a frame larger than
// maxFrameBytes or a message larger than MaxMessageBytes cuts the
// connection at its header, and read deadlines bound how long reads wait
// for the first frame, and for the rest of any frame once begun. Between
// frames there is no
// read deadline: an idle call is legitimate, and dRPC's inactivity timeout
// closes a connection idle between calls.
type guardedConn struct {
	net.Conn
	opts ServerOptions

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
	err          error

	closeOnce sync.Once
	release   func()
}

func newGuardedConn(c net.Conn, opts ServerOptions, release func()) *guardedConn {
	return &guardedConn{Conn: c, opts: opts, release: release, handshakeBy: time.Now().Add(opts.HandshakeTimeout)}
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(c.release)
	return err
}

func (c *guardedConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	now := time.Now()
	midFrame := c.hdrLen > 0 || c.remaining > 0
	var deadline time.Time
	switch {
	case !c.handshakeBy.IsZero():
		deadline = c.handshakeBy
	case midFrame:
		deadline = now.Add(c.opts.FrameTimeout - c.frameWaited)
	}
	if !deadline.Equal(c.readDeadline) {
		if err := c.Conn.SetReadDeadline(deadline); err != nil {
			return 0, err
		}
		c.readDeadline = deadline
	}
	n, err := c.Conn.Read(p)
	if midFrame {
		c.frameWaited += time.Since(now)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		what := "a frame begun"
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
			c.msgID, c.msgBytes = fr.ID, 0
		}
		c.msgBytes += length
		if c.msgBytes > uint64(c.opts.MaxMessageBytes) {
			return fmt.Errorf("message of over %d bytes, limit %d", c.msgBytes, c.opts.MaxMessageBytes)
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
