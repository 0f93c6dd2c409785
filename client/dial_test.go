package client_test

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/memcoord"
	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
	"github.com/thunderyurts/thunderyurts/coord/zklocal/zktest"
	"github.com/thunderyurts/thunderyurts/internal/poll"
)

// TestDial runs a cluster on a real ZooKeeper and dials it through a proxy
// the test can cut: the client works, logs nothing to the default loggers
// while its ZooKeeper connection breaks and heals, logs to Options.Logger
// when given one, and one Close ends its ZooKeeper session.
func TestDial(t *testing.T) {
	zk := zktest.Start(t)
	conn, err := zkcoord.Dial(ctxFor(t, 20*time.Second), zk.Addr(), zkcoord.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	startInProcess(t, coord.NewCluster(conn, "dialtest").WithLogger(slog.New(slog.DiscardHandler)), "g1")
	zkProxy := startProxy(t, zk.Addr())

	t.Run("quiet through a flapping session, one Close", func(t *testing.T) {
		logged := captureDefaultLogs(t)
		c, err := client.Dial(ctxFor(t, 10*time.Second), zkProxy.addr(), "dialtest", client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			poll.Until(t, 30*time.Second, "the client's ZooKeeper connection", func() bool { return zkProxy.open() > 0 })
			zkProxy.cut()
		}
		poll.Until(t, 30*time.Second, "the client to reconnect", func() bool { return zkProxy.open() > 0 })
		ctx := ctxFor(t, 10*time.Second)
		if err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Get(ctx, []byte("k")); err != nil || string(v) != "v" {
			t.Fatalf("get = %q, %v", v, err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 30*time.Second, "Close to end the ZooKeeper connection", func() bool { return zkProxy.open() == 0 })
		if err := c.Put(ctx, []byte("k"), []byte("v")); !errors.Is(err, client.ErrClosed) {
			t.Fatalf("put after Close: %v", err)
		}
		if out := logged(); out != "" {
			t.Fatalf("the client wrote to the default logger:\n%s", out)
		}
	})

	t.Run("Logger option", func(t *testing.T) {
		f := logFile(t)
		c, err := client.Dial(ctxFor(t, 10*time.Second), zk.Addr(), "dialtest", client.Options{Logger: slog.New(slog.NewTextHandler(f, nil))})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		if got := readFile(t, f); !strings.Contains(got, "zookeeper session established") {
			t.Fatalf("Options.Logger got no session line:\n%s", got)
		}
	})

	t.Run("no such cluster", func(t *testing.T) {
		_, err := client.Dial(ctxFor(t, 10*time.Second), zk.Addr(), "nosuchcluster", client.Options{})
		if !errors.Is(err, coord.ErrNoCluster) || errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("dial a cluster that does not exist: %v", err)
		}
	})

	t.Run("malformed address", func(t *testing.T) {
		_, err := client.Dial(ctxFor(t, 10*time.Second), zk.Addr()+"/bad//chroot", "dialtest", client.Options{})
		if !errors.Is(err, client.ErrInvalidArgument) {
			t.Fatalf("dial a malformed address: %v", err)
		}
	})
}

// TestDialZooKeeperDown: with ZooKeeper down, Dial fails with an error
// matching ErrUnavailable, at once with FailFast and at ctx's end without.
func TestDialZooKeeperDown(t *testing.T) {
	zk := zktest.Start(t)
	if err := zk.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err := client.Dial(ctxFor(t, 30*time.Second), zk.Addr(), "default", client.Options{FailFast: true})
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("fail-fast dial with ZooKeeper down: %v", err)
	}
	_, err = client.Dial(ctxFor(t, time.Second), zk.Addr(), "default", client.Options{})
	if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial with ZooKeeper down: %v", err)
	}
}

// TestUnavailableMatchesEveryOutage: whichever part of the cluster is out,
// the error matches the one ErrUnavailable.
func TestUnavailableMatchesEveryOutage(t *testing.T) {
	t.Run("coordination service", func(t *testing.T) {
		conn := memcoord.New().Connect()
		conn.SetUnavailable(true)
		_, err := client.New(ctxFor(t, 5*time.Second), coord.NewCluster(conn, "test"), client.Options{})
		if !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("new with the coordination service down: %v", err)
		}
	})
	t.Run("coordinators", func(t *testing.T) {
		_, err := client.New(ctxFor(t, 5*time.Second), client.CoordinatorRoutes([]string{"127.0.0.1:1"}, nil), client.Options{})
		if !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("new with no coordinator up: %v", err)
		}
	})
	t.Run("no primary", func(t *testing.T) {
		cl, nodes := inProcessCluster(t, "g1")
		c := newClientTimeout(t, cl, time.Second)
		nodes["g1"].Close()
		err := c.Put(context.Background(), []byte("k"), []byte("v"))
		if !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("put with the group's only node down: %v", err)
		}
	})
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// captureDefaultLogs sends what the log package and slog's default logger
// receive to a file until the test ends, and returns a function that reads
// what they got.
func captureDefaultLogs(t *testing.T) func() string {
	f := logFile(t)
	prevOut, prevSlog := log.Writer(), slog.Default()
	log.SetOutput(f)
	slog.SetDefault(slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() {
		slog.SetDefault(prevSlog)
		log.SetOutput(prevOut)
	})
	return func() string { return readFile(t, f) }
}

// logFile is a file for log lines: unlike a bytes.Buffer, safe to write
// from many goroutines.
func logFile(t *testing.T) *os.File {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func readFile(t *testing.T, f *os.File) string {
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tcpProxy forwards connections to target; cut closes the open ones.
// conns holds the client side of each open connection.
type tcpProxy struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

func startProxy(t *testing.T, target string) *tcpProxy {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{lis: lis, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { _ = lis.Close(); p.cut() })
	return p
}

func (p *tcpProxy) addr() string { return p.lis.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in] = true
		p.mu.Unlock()
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// pipe copies src to dst and closes both when either side ends.
func (p *tcpProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, src) // one of the two is the client side
	delete(p.conns, dst)
	p.mu.Unlock()
}

// open is how many client connections are open.
func (p *tcpProxy) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}
