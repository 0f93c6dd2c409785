package clustertest

import (
	"context"
	"encoding/json"
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

// proxy forwards one member's connections to one data node. While the two
// are partitioned it is a black hole, as a real partition is: connections
// stay open and what is sent is lost, so each side notices only by its
// own timeouts. Healing closes the connections that lived through the
// partition, so both sides reconnect at once.
type proxy struct {
	lis    net.Listener
	target string
	link   pair

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool // open connections; true: lived through a partition
	wg    sync.WaitGroup
}

func newProxy(target string, link pair) (*proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{lis: lis, target: target, link: link, conns: map[net.Conn]bool{}}
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
		p.mu.Lock()
		cut := p.cut
		p.conns[in] = cut
		p.mu.Unlock()
		if cut {
			// Nothing reaches the target: swallow what comes until healed.
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.pipe(nil, in) }()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			p.drop(in)
			continue
		}
		p.mu.Lock()
		p.conns[out] = false
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); p.pipe(out, in) }()
		go func() { defer p.wg.Done(); p.pipe(in, out) }()
	}
}

// pipe copies src to dst (dst nil: nowhere) until either closes, dropping
// what arrives while the link is cut.
func (p *proxy) pipe(dst, src net.Conn) {
	defer p.drop(src)
	if dst != nil {
		defer p.drop(dst)
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && dst != nil {
			p.mu.Lock()
			cut := p.cut
			p.mu.Unlock()
			if !cut {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// setCut cuts the link or heals it.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	for c := range p.conns {
		if cut {
			p.conns[c] = true
		} else if p.conns[c] {
			c.Close()
		}
	}
}

func (p *proxy) close() {
	p.lis.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
