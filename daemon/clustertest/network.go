package clustertest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/memcoord"
)

// view is one member's connection to the coordination service: it reads
// data node registrations with each address replaced by the proxy that
// carries this member's traffic to that node.
type view struct {
	*memcoord.Conn
	c      *Cluster
	viewer string
}

// Get implements coord.Conn.
func (v *view) Get(ctx context.Context, path string) ([]byte, coord.Version, error) {
	data, ver, err := v.Conn.Get(ctx, path)
	if err != nil || !strings.HasPrefix(path, coord.ClusterPath(v.c.name)+"/nodes/") {
		return data, ver, err
	}
	var info coord.NodeInfo
	if json.Unmarshal(data, &info) != nil {
		return data, ver, nil
	}
	info.Addr = v.c.route(v.viewer, info.Addr)
	out, err := json.Marshal(info)
	if err != nil {
		return data, ver, nil
	}
	return out, ver, nil
}

// pair names two members in a fixed order, for partitions.
type pair struct{ a, b string }

func pairOf(a, b string) pair {
	if a > b {
		a, b = b, a
	}
	return pair{a, b}
}

// proxy forwards one member's connections to one data node, unless the
// two are partitioned.
type proxy struct {
	lis    net.Listener
	target string
	link   pair

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(target string, link pair) (*proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{lis: lis, target: target, link: link, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.serve() }()
	return p, nil
}

func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) serve() {
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in, out) {
			continue
		}
		p.wg.Add(2)
		go func() { defer p.wg.Done(); p.pipe(out, in) }()
		go func() { defer p.wg.Done(); p.pipe(in, out) }()
	}
}

// track registers a connection pair, or closes it when the link is cut.
func (p *proxy) track(in, out net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		in.Close()
		out.Close()
		return false
	}
	p.conns[in], p.conns[out] = struct{}{}, struct{}{}
	return true
}

func (p *proxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// setCut cuts the link (closing what is open, refusing what comes) or
// restores it.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *proxy) close() {
	p.lis.Close()
	p.setCut(true)
	p.wg.Wait()
}
