package client_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/thunderyurts/thunderyurts/internal/poll"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/wire"
)

func newClientTimeout(t *testing.T, routes client.RouteSource, timeout time.Duration) *client.Client {
	t.Helper()
	c, err := client.New(context.Background(), routes, client.Options{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// eventually polls cond until it holds, failing the test after 15 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 15*time.Second, what, cond)
}

// TestHungPrimaryFailsOverWhenRoutesChange: requests waiting on a primary
// that stopped answering (a stopped process: its connection stays open)
// move to the new primary once the routes name it, long before their
// timeout, and later requests go straight there.
func TestHungPrimaryFailsOverWhenRoutesChange(t *testing.T) {
	a, b := startFakeNode(t), startFakeNode(t)
	routes := &staticRoutes{rt: routesTo(a.addr)}
	const timeout = 30 * time.Second
	c := newClientTimeout(t, routes, timeout)
	ctx := context.Background()
	if err := c.Put(ctx, []byte("before"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	a.freeze()
	before := a.received.Load()
	const puts = 8
	errs := make(chan error, puts)
	for i := range puts {
		go func() { errs <- c.Put(ctx, fmt.Appendf(nil, "k%d", i), []byte("v")) }()
	}
	eventually(t, "puts reach the frozen node", func() bool { return a.received.Load() > before })
	routes.set(routesTo(b.addr)) // the failover
	start := time.Now()
	for range puts {
		if err := <-errs; err != nil {
			t.Fatalf("put across the failover: %v", err)
		}
	}
	if took := time.Since(start); took > timeout/3 {
		t.Fatalf("puts waited %s for the frozen node after the routes changed (timeout %s)", took, timeout)
	}
	if err := c.Put(ctx, []byte("after"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	for i := range puts {
		if _, ok := b.value(fmt.Sprintf("k%d", i)); !ok {
			t.Errorf("k%d is not on the new primary", i)
		}
	}
	if _, ok := b.value("after"); !ok {
		t.Error("a put after the failover did not go to the new primary")
	}
}

// TestKeepaliveClosesSilentPipe: the client closes a connection on which
// the node answers nothing, keepalives included, whether idle or with a
// request waiting; the request is retried on a new connection and succeeds
// once the node answers again.
func TestKeepaliveClosesSilentPipe(t *testing.T) {
	a := startFakeNode(t)
	c := newClientTimeout(t, &staticRoutes{rt: routesTo(a.addr)}, 30*time.Second)
	ctx := context.Background()
	if err := c.Put(ctx, []byte("before"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	a.freeze()
	eventually(t, "the idle connection to the frozen node is closed", func() bool { return a.ended.Load() == 1 })

	done := make(chan error, 1)
	go func() { done <- c.Put(ctx, []byte("k"), []byte("v")) }()
	eventually(t, "the connection a put waits on is closed and dialed again", func() bool {
		return a.ended.Load() >= 2 && a.opened.Load() >= 3
	})
	a.thaw()
	if err := <-done; err != nil {
		t.Fatalf("put once the node answers again: %v", err)
	}
	if v, ok := a.value("k"); !ok || string(v) != "v" {
		t.Fatalf("k = %q, %v", v, ok)
	}
}

// TestTimedOutRequestRefreshesRoutes: a request that times out on a node
// that still answers keepalives makes the client re-read the routes, so the
// next request goes to the primary they name.
func TestTimedOutRequestRefreshesRoutes(t *testing.T) {
	a, b := startFakeNode(t), startFakeNode(t)
	a.setDeaf(true)
	routes := &staticRoutes{rt: routesTo(a.addr)}
	c := newClientTimeout(t, routes, 300*time.Millisecond)
	routes.set(routesTo(b.addr)) // a failover the client has not seen
	ctx := context.Background()
	err := c.Put(ctx, []byte("k"), []byte("v"))
	if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put to a deaf node: %v", err)
	}
	eventually(t, "the routes are re-read after the timeout", func() bool {
		return c.Routes().Groups["g1"].PrimaryAddr == b.addr
	})
	if err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.value("k"); !ok {
		t.Fatal("the put did not go to the primary the routes name")
	}
}

// TestDeposedPrimaryRefusalsAreRetried: an old primary's NOT_PRIMARY or
// UNAVAILABLE answers never reach the caller while the timeout lasts; the
// client re-reads the routes until they name the new primary.
func TestDeposedPrimaryRefusalsAreRetried(t *testing.T) {
	for _, code := range []wire.Code{wire.Code_NOT_PRIMARY, wire.Code_UNAVAILABLE} {
		t.Run(code.String(), func(t *testing.T) {
			a, b := startFakeNode(t), startFakeNode(t)
			a.setRefuse(code)
			routes := &staticRoutes{rt: routesTo(a.addr)}
			c := newClientTimeout(t, routes, 30*time.Second)
			time.AfterFunc(300*time.Millisecond, func() { routes.set(routesTo(b.addr)) })
			if err := c.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
				t.Fatalf("put across the failover: %v", err)
			}
			if _, ok := b.value("k"); !ok {
				t.Fatal("the put did not reach the new primary")
			}
		})
	}
}

// TestRetriesReuseTheTag: every attempt of one put or delete, on the old
// primary that refuses it and on the new one, carries the same tag (the
// client's id, the write's number); the next write gets the next number,
// and another client another id.
func TestRetriesReuseTheTag(t *testing.T) {
	a, b := startFakeNode(t), startFakeNode(t)
	a.setRefuse(wire.Code_NOT_PRIMARY)
	routes := &staticRoutes{rt: routesTo(a.addr)}
	c := newClientTimeout(t, routes, 30*time.Second)
	ctx := context.Background()
	time.AfterFunc(300*time.Millisecond, func() { routes.set(routesTo(b.addr)) })
	if err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, []byte("k")); err != nil {
		t.Fatal(err)
	}
	refused, served := a.receivedWrites(), b.receivedWrites()
	if len(refused) < 2 || len(served) != 2 {
		t.Fatalf("%d attempts refused by the old primary, %d served by the new; want several and 2", len(refused), len(served))
	}
	first := served[0]
	if first.ClientId == 0 || first.ClientSeq == 0 {
		t.Fatalf("the put is untagged: client %d seq %d", first.ClientId, first.ClientSeq)
	}
	for i, r := range refused {
		if r.ClientId != first.ClientId || r.ClientSeq != first.ClientSeq {
			t.Fatalf("attempt %d carries tag (%d, %d), the served one (%d, %d)", i, r.ClientId, r.ClientSeq, first.ClientId, first.ClientSeq)
		}
	}
	if del := served[1]; del.Op != wire.Op_DELETE || del.ClientId != first.ClientId || del.ClientSeq != first.ClientSeq+1 {
		t.Fatalf("the delete after the put: %v tag (%d, %d)", del.Op, del.ClientId, del.ClientSeq)
	}
	other := newClientTimeout(t, &staticRoutes{rt: routesTo(b.addr)}, 30*time.Second)
	if err := other.Put(ctx, []byte("k"), []byte("w")); err != nil {
		t.Fatal(err)
	}
	if w := b.receivedWrites()[2]; w.ClientId == first.ClientId {
		t.Fatal("two clients share an id")
	}
}

// TestRetryAfterLostConnectionReusesTheTag: a put whose connection the
// keepalive closes (the node stopped answering) is sent again on a new
// connection with the same tag.
func TestRetryAfterLostConnectionReusesTheTag(t *testing.T) {
	a := startFakeNode(t)
	c := newClientTimeout(t, &staticRoutes{rt: routesTo(a.addr)}, 30*time.Second)
	ctx := context.Background()
	a.freeze()
	done := make(chan error, 1)
	go func() { done <- c.Put(ctx, []byte("k"), []byte("v")) }()
	eventually(t, "the put is sent again on a new connection", func() bool { return len(a.receivedWrites()) >= 2 })
	a.thaw()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	w := a.receivedWrites()
	for _, r := range w[1:] {
		if r.ClientId != w[0].ClientId || r.ClientSeq != w[0].ClientSeq || r.ClientId == 0 {
			t.Fatalf("attempts carry tags (%d, %d) and (%d, %d)", w[0].ClientId, w[0].ClientSeq, r.ClientId, r.ClientSeq)
		}
	}
}
