package zkcoord

import (
	"context"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

// renewLease confirms the session about every sixth of its timeout, with a
// read round trip whose send time becomes the lease (coord.SessionLease).
// The client's own pings say nothing we could observe. It runs until Close.
func (c *Conn) renewLease() {
	defer close(c.renewDone)
	tick := time.NewTicker(max(c.timeout/6, 10*time.Millisecond))
	defer tick.Stop()
	for {
		c.confirmSession()
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
	}
}

// confirmSession records a lease if a read sent now is answered within the
// same session: the session id is the same before and after, and ids are
// never reused, so the server heard from this session at or after sent.
func (c *Conn) confirmSession() {
	sid := c.zk.SessionID()
	if sid == 0 {
		return
	}
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	_, err := call(ctx, c, func() (bool, error) {
		ok, _, err := c.zk.Exists("/")
		return ok, err
	})
	granted := c.net.grantedTimeout()
	if err != nil || c.zk.SessionID() != sid || granted <= 0 {
		return
	}
	c.lease.Store(&coord.SessionLease{Session: sid, Sent: sent, Timeout: granted})
}

// Lease implements coord.Conn.
func (c *Conn) Lease() coord.SessionLease {
	l := c.lease.Load()
	if l == nil || c.closed.Load() || l.Session != c.zk.SessionID() {
		return coord.SessionLease{}
	}
	return *l
}
