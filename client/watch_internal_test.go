package client

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

// routeFunc adapts a function to RouteSource.
type routeFunc func(context.Context) (*coord.RouteTable, error)

func (f routeFunc) Routes(ctx context.Context) (*coord.RouteTable, error) { return f(ctx) }

// silentListener accepts connections and reads them without ever
// answering, like a stopped process whose kernel still takes bytes.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = conn.Close() })
			go func() { _, _ = io.Copy(io.Discard, conn) }()
		}
	}()
	return ln.Addr().String()
}

func oneGroup(addr string) *coord.RouteTable {
	return &coord.RouteTable{
		Table:  &coord.SlotTable{Version: 1, Owners: []string{"g1"}},
		Groups: map[string]coord.GroupRoute{"g1": {Name: "g1", Primary: "n1", PrimaryAddr: addr}},
	}
}

// TestSuspectPipeToDeposedNodeClosesOnRouteChange: once the routes name
// another primary, a suspect pipe to the old one is closed at the next
// route read, not when its keepalive gives up.
func TestSuspectPipeToDeposedNodeClosesOnRouteChange(t *testing.T) {
	old := silentListener(t)
	var current atomic.Pointer[coord.RouteTable]
	current.Store(oneGroup(old))
	c, err := New(context.Background(), routeFunc(func(context.Context) (*coord.RouteTable, error) {
		return current.Load(), nil
	}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	p, err := c.pipe(ctx, old, deadline)
	if err != nil {
		t.Fatal(err)
	}
	current.Store(oneGroup("127.0.0.1:1")) // the failover
	p.markSuspect()
	select {
	case <-p.ctx.Done():
	case <-ctx.Done():
		t.Fatal("the suspect pipe to the deposed node stayed open")
	}
	if cause := context.Cause(p.ctx); errors.Is(cause, errNodeSilent) {
		t.Fatalf("the keepalive closed the pipe, not the route change: %v", cause)
	}
}
