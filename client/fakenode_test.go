package client_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"storj.io/drpc/drpcmux"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// fakeNode is a data node stand-in serving Data.Stream from a map. It can
// be frozen like a stopped process (its connections stay open and it
// answers nothing, keepalives included), made deaf (it answers keepalives,
// which carry an empty key, and drops every other request), or made to
// refuse every request as a deposed primary does.
type fakeNode struct {
	wire.DRPCDataUnimplementedServer
	addr string

	mu     sync.Mutex
	data   map[string][]byte
	gate   chan struct{} // closed unless frozen
	deaf   bool
	refuse wire.Code // OK: serve
	// Data streams: the streams that carried a request for a key (the
	// client pings on a stream of its own).
	opened   atomic.Int64
	ended    atomic.Int64
	received atomic.Int64    // requests for a key
	writes   []*wire.Request // every put and delete received, answered or not
}

func startFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	n := &fakeNode{data: map[string][]byte{}, gate: make(chan struct{})}
	close(n.gate)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr = ln.Addr().String()
	mux := drpcmux.New()
	if err := wire.DRPCRegisterData(mux, n); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = wire.Serve(ctx, ln, mux, wire.ServerOptions{}) }()
	t.Cleanup(func() {
		n.thaw()
		cancel()
		<-done
	})
	return n
}

func (n *fakeNode) freeze() {
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case <-n.gate:
		n.gate = make(chan struct{})
	default:
	}
}

func (n *fakeNode) thaw() {
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case <-n.gate:
	default:
		close(n.gate)
	}
}

func (n *fakeNode) setDeaf(deaf bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.deaf = deaf
}

func (n *fakeNode) setRefuse(code wire.Code) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refuse = code
}

// receivedWrites returns the puts and deletes received so far.
func (n *fakeNode) receivedWrites() []*wire.Request {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.writes)
}

func (n *fakeNode) value(key string) ([]byte, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v, ok := n.data[key]
	return v, ok
}

// Stream keeps reading while frozen, as the kernel of a stopped process
// keeps taking bytes, so it sees the client close the connection.
func (n *fakeNode) Stream(rpc wire.DRPCData_StreamStream) error {
	var data atomic.Bool
	defer func() {
		if data.Load() {
			n.ended.Add(1)
		}
	}()
	ctx := rpc.Context()
	var mu sync.Mutex
	var queue []*wire.Batch
	more := make(chan struct{}, 1)
	go func() {
		for {
			batch, err := rpc.Recv()
			if err != nil {
				return
			}
			for _, req := range batch.Requests {
				if req.Op == wire.Op_PUT || req.Op == wire.Op_DELETE {
					n.mu.Lock()
					n.writes = append(n.writes, req)
					n.mu.Unlock()
				}
				if req.Op != wire.Op_PING {
					n.received.Add(1)
					if !data.Swap(true) {
						n.opened.Add(1)
					}
				}
			}
			mu.Lock()
			queue = append(queue, batch)
			mu.Unlock()
			select {
			case more <- struct{}{}:
			default:
			}
		}
	}()
	for {
		select {
		case <-more:
		case <-ctx.Done():
			return nil
		}
		n.mu.Lock()
		gate := n.gate
		n.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
			return nil
		}
		mu.Lock()
		batches := queue
		queue = nil
		mu.Unlock()
		for _, batch := range batches {
			if err := rpc.Send(n.answer(batch)); err != nil {
				return nil
			}
		}
	}
}

func (n *fakeNode) answer(batch *wire.Batch) *wire.BatchReply {
	n.mu.Lock()
	defer n.mu.Unlock()
	reply := &wire.BatchReply{}
	for _, req := range batch.Requests {
		resp := &wire.Response{Id: req.Id}
		switch {
		case req.Op == wire.Op_PING:
		case n.deaf:
			continue
		case n.refuse != wire.Code_OK:
			resp.Code = n.refuse
		case req.Op == wire.Op_PUT:
			n.data[string(req.Key)] = req.Value
		case req.Op == wire.Op_DELETE:
			delete(n.data, string(req.Key))
		default:
			v, ok := n.data[string(req.Key)]
			if !ok {
				resp.Code = wire.Code_NOT_FOUND
			}
			resp.Value = v
		}
		reply.Responses = append(reply.Responses, resp)
	}
	return reply
}

// routesTo is a table of 8 slots, all in group g1 whose primary is at addr.
func routesTo(addr string) *coord.RouteTable {
	owners := make([]string, 8)
	for i := range owners {
		owners[i] = "g1"
	}
	return &coord.RouteTable{
		Table:  &coord.SlotTable{Version: 1, Owners: owners},
		Groups: map[string]coord.GroupRoute{"g1": {Name: "g1", Primary: "n1", PrimaryAddr: addr}},
	}
}

// staticRoutes serves a route table the test may replace, counting reads.
type staticRoutes struct {
	mu    sync.Mutex
	rt    *coord.RouteTable
	reads int
}

func (s *staticRoutes) Routes(context.Context) (*coord.RouteTable, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	return s.rt, nil
}

func (s *staticRoutes) set(rt *coord.RouteTable) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rt = rt
}

func (s *staticRoutes) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}
