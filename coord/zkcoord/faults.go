package zkcoord

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

// netFaults is the dialer the ZooKeeper client connects through. It keeps
// the last dial error (for Dial's message) and the session credentials the
// server handed out, read off the wire because the client keeps them private
// (ExpireSession needs them), and it can cut the client off
// (SetUnavailable).
type netFaults struct {
	mu      sync.Mutex
	down    bool
	healed  chan struct{} // closed when down ends
	live    net.Conn      // the current connection, to cut it
	lastErr error
	sid     int64
	passwd  []byte
	server  string        // where the session was established
	granted time.Duration // the session timeout the server granted

	// Dials refused in a row, and how many make every server (the client
	// tries them in turn) refuse: then allRefused is signalled.
	refused, servers int
	allRefused       chan struct{}
}

// watchRefusals returns a channel signalled when servers dials in a row have
// been refused.
func (f *netFaults) watchRefusals(servers int) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.servers, f.allRefused = servers, make(chan struct{}, 1)
	return f.allRefused
}

func (f *netFaults) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	f.mu.Lock()
	down, healed := f.down, f.healed
	f.mu.Unlock()
	if down {
		// Hold the dial rather than fail it: the client sleeps a second after
		// failing every server, and a short cut should end sooner than that.
		t := time.NewTimer(timeout)
		select {
		case <-healed:
		case <-t.C:
		}
		t.Stop()
	}
	f.mu.Lock()
	down = f.down
	f.mu.Unlock()
	var nc net.Conn
	err := errors.New("cut off by fault injection")
	if !down {
		nc, err = net.DialTimeout(network, addr, timeout)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && f.down {
		nc.Close()
		err = errors.New("cut off by fault injection")
	}
	if err != nil {
		f.lastErr = err
		f.refused++
		if !errors.Is(err, syscall.ECONNREFUSED) {
			f.refused = 0
		}
		if f.allRefused != nil && f.refused >= f.servers {
			select {
			case f.allRefused <- struct{}{}:
			default:
			}
		}
		return nil, err
	}
	f.lastErr, f.refused = nil, 0
	f.live = &sniffConn{Conn: nc, f: f, server: addr}
	return f.live, nil
}

func (f *netFaults) lastError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

func (f *netFaults) sessionID() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sid
}

func (f *netFaults) setDown(down bool) {
	f.mu.Lock()
	switch {
	case down && !f.down:
		f.healed = make(chan struct{})
	case !down && f.down:
		close(f.healed)
	}
	f.down = down
	live := f.live
	if down {
		f.live = nil
	}
	f.mu.Unlock()
	if down && live != nil {
		live.Close()
	}
}

// sniffConn reads the session id and password from the server's answer to
// the connect request, the first packet on every connection.
type sniffConn struct {
	net.Conn
	f      *netFaults
	server string
	head   []byte // the first packet so far; nil once parsed
	seen   bool
}

func (s *sniffConn) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	if !s.seen && n > 0 {
		s.head = append(s.head, p[:n]...)
		if body, ok := packet(s.head); ok {
			s.seen, s.head = true, nil
			sid, passwd, granted := parseConnectResponse(body)
			s.f.mu.Lock()
			s.f.sid, s.f.passwd, s.f.server = sid, passwd, s.server
			if sid != 0 {
				s.f.granted = granted
			}
			s.f.mu.Unlock()
		}
	}
	return n, err
}

// packet returns the first length-prefixed packet of buf once it is complete.
func packet(buf []byte) ([]byte, bool) {
	if len(buf) < 4 {
		return nil, false
	}
	n := int(binary.BigEndian.Uint32(buf))
	if len(buf) < 4+n {
		return nil, false
	}
	return buf[4 : 4+n], true
}

// parseConnectResponse decodes {int32 protocolVersion; int32 timeOut; int64
// sessionId; buffer passwd}; session 0 means the server refused (expired).
// timeOut is the session timeout the server granted, which it may have
// lowered from the one asked for.
func parseConnectResponse(body []byte) (sid int64, passwd []byte, granted time.Duration) {
	if len(body) < 20 {
		return 0, nil, 0
	}
	granted = time.Duration(int32(binary.BigEndian.Uint32(body[4:8]))) * time.Millisecond
	sid = int64(binary.BigEndian.Uint64(body[8:16]))
	n := int(int32(binary.BigEndian.Uint32(body[16:20])))
	if n < 0 || 20+n > len(body) {
		return sid, nil, granted
	}
	return sid, bytes.Clone(body[20 : 20+n]), granted
}

// grantedTimeout is the session timeout the server granted last; 0 before
// the first session.
func (f *netFaults) grantedTimeout() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.granted
}

// SetUnavailable cuts the Conn off from ZooKeeper (true): the open TCP
// connection is closed and reconnecting fails, as in a network partition.
// The session is in doubt at once (SessionDone closes, watches end with
// coord.ErrSessionLost) and calls fail with coord.ErrUnavailable; the server
// expires the session if the cut lasts longer than the session timeout.
// SetUnavailable(false) lets the client reconnect.
// For tests of failure handling.
func (c *Conn) SetUnavailable(down bool) {
	c.log.Warn("fault injection: zookeeper connection", "cut", down)
	c.net.setDown(down)
}

// ExpireSession makes the server expire the Conn's current session now, the
// way it would after a partition longer than the session timeout: the
// session's ephemeral nodes are deleted and SessionDone closes; the client
// then gets a new session, usually within milliseconds. It returns once the
// server has closed the session and SessionDone is closed. For tests of
// failure handling.
func (c *Conn) ExpireSession(ctx context.Context) error {
	c.net.mu.Lock()
	sid, passwd, server := c.net.sid, c.net.passwd, c.net.server
	c.net.mu.Unlock()
	if sid == 0 {
		return fmt.Errorf("expire session: %w: no session", coord.ErrUnavailable)
	}
	done := c.session.Done()
	c.log.Warn("fault injection: expiring zookeeper session", "session", fmt.Sprintf("0x%x", sid))
	// Cut the client off first: it would otherwise reconnect with the same
	// session and race our close of it.
	c.net.setDown(true)
	defer c.net.setDown(false)
	if err := closeSession(ctx, server, sid, passwd, c.timeout); err != nil {
		return fmt.Errorf("expire session 0x%x: %w", sid, err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("expire session 0x%x: %w", sid, coord.ContextError(ctx))
	}
}

// closeSession joins session sid on server with a connection of its own and
// closes it: the server deletes the session's ephemeral nodes before it
// answers.
func closeSession(ctx context.Context, server string, sid int64, passwd []byte, timeout time.Duration) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return fmt.Errorf("%w: %w", coord.ErrUnavailable, err)
	}
	defer nc.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	if err := nc.SetDeadline(deadline); err != nil {
		return err
	}
	// ConnectRequest{int32 protocolVersion; int64 lastZxidSeen; int32 timeOut;
	// int64 sessionId; buffer passwd}
	var req []byte
	req = binary.BigEndian.AppendUint32(req, 0)
	req = binary.BigEndian.AppendUint64(req, 0)
	req = binary.BigEndian.AppendUint32(req, uint32(timeout.Milliseconds()))
	req = binary.BigEndian.AppendUint64(req, uint64(sid))
	req = binary.BigEndian.AppendUint32(req, uint32(len(passwd)))
	req = append(req, passwd...)
	body, err := roundTrip(nc, req)
	if err != nil {
		return err
	}
	if got, _, _ := parseConnectResponse(body); got == 0 {
		return nil // already expired
	}
	// RequestHeader{int32 xid; int32 type}, type closeSession = -11;
	// ReplyHeader{int32 xid; int64 zxid; int32 err}.
	closeReq := binary.BigEndian.AppendUint32(nil, 1)
	closeReq = binary.BigEndian.AppendUint32(closeReq, uint32(0xFFFFFFF5))
	body, err = roundTrip(nc, closeReq)
	if err != nil {
		return err
	}
	if len(body) < 16 {
		return fmt.Errorf("close session: short reply (%d bytes)", len(body))
	}
	if code := int32(binary.BigEndian.Uint32(body[12:16])); code != 0 {
		return fmt.Errorf("close session: zookeeper error %d", code)
	}
	return nil
}

// roundTrip writes one length-prefixed packet and reads one back.
func roundTrip(nc net.Conn, body []byte) ([]byte, error) {
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	if _, err := nc.Write(append(msg, body...)); err != nil {
		return nil, fmt.Errorf("%w: %w", coord.ErrUnavailable, err)
	}
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		return nil, fmt.Errorf("%w: %w", coord.ErrUnavailable, err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > 1<<20 {
		return nil, fmt.Errorf("zookeeper reply of %d bytes", n)
	}
	reply := make([]byte, n)
	if _, err := io.ReadFull(nc, reply); err != nil {
		return nil, fmt.Errorf("%w: %w", coord.ErrUnavailable, err)
	}
	return reply, nil
}
