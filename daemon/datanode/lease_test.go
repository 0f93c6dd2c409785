package datanode

import (
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// A primary paused like a SIGSTOPped process — no goroutine of its own
// notices anything — refuses reads once its lease has run out, before and
// after a successor is elected and acknowledges a newer write, and never
// returns the old value.
func TestPausedPrimaryRefusesOnceItsLeaseExpired(t *testing.T) {
	c := newTestCluster(t)
	inner := c.srv.Connect()
	conn := newPausable(inner, 1500*time.Millisecond)
	a := c.startNode(nodeDir(t, "a"), conn, nil)
	c.waitGroup("a leads", func(g *coord.Group) bool { return g.Primary == a.ID() })
	b := c.startNode(nodeDir(t, "b"), nil, nil)
	c.waitServing(a, b)
	if r := call(t, a.Addr(), patience, put("k", "old"))[0]; r.Code != wire.Code_OK {
		t.Fatalf("put old: %v %s", r.Code, r.Message)
	}

	lease := conn.pause()
	for time.Since(lease.Sent) < lease.Timeout*2/3 {
		time.Sleep(10 * time.Millisecond)
	}
	if !a.state.Load().isPrimary() {
		t.Fatal("the paused primary's own view changed: the test no longer shows the lease at work")
	}
	r := call(t, a.Addr(), patience, get("k"))[0]
	if r.Code != wire.Code_NOT_PRIMARY {
		t.Fatalf("paused primary past its lease answered a get: %v %q %s", r.Code, r.Value, r.Message)
	}
	if r := call(t, a.Addr(), patience, put("k", "lost"))[0]; r.Code != wire.Code_NOT_PRIMARY {
		t.Fatalf("paused primary past its lease took a put: %v %s", r.Code, r.Message)
	}

	// Its session expires (it was silent the whole timeout): the
	// coordinator promotes b, which acknowledges a newer value.
	inner.ExpireSession()
	c.waitGroup("b promoted", func(g *coord.Group) bool { return g.Primary == b.ID() })
	eventually(t, "b acknowledges a put", func() bool {
		return call(t, b.Addr(), time.Second, put("k", "new"))[0].Code == wire.Code_OK
	})
	if !a.state.Load().isPrimary() {
		t.Fatal("the paused primary's own view changed: the test no longer shows the lease at work")
	}
	if r := call(t, a.Addr(), patience, get("k"))[0]; r.Code == wire.Code_OK {
		t.Fatalf("stale read from the old primary: %q", r.Value)
	}

	conn.resume()
	eventually(t, "the old primary steps down", func() bool { return !a.state.Load().isPrimary() })
	if r := call(t, b.Addr(), patience, get("k"))[0]; r.Code != wire.Code_OK || string(r.Value) != "new" {
		t.Fatalf("get from the new primary: %v %q %s", r.Code, r.Value, r.Message)
	}
}
