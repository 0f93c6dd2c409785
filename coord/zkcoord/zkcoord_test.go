package zkcoord_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/coordtest"
	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
	"github.com/thunderyurts/thunderyurts/coord/zklocal/zktest"
)

// sessionTimeout is short so that faults resolve quickly, long enough that a
// loaded test machine does not lose sessions by accident: at 4 s the
// client's 2.7 s read timeout once closed a connection mid-request while a
// whole suite ran under the race detector on two cores.
const sessionTimeout = 6 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func dial(t testing.TB, servers string) *zkcoord.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := zkcoord.Dial(ctx, servers, zkcoord.Options{SessionTimeout: sessionTimeout, Logger: quiet})
	if err != nil {
		t.Fatalf("dial %s: %v", servers, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type faults struct{}

func (faults) ExpireSession(t testing.TB, c coord.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.(*zkcoord.Conn).ExpireSession(ctx); err != nil {
		t.Fatalf("expire session: %v", err)
	}
}

func (faults) SetUnavailable(t testing.TB, c coord.Conn, down bool) {
	c.(*zkcoord.Conn).SetUnavailable(down)
}

func TestConformance(t *testing.T) {
	srv := zktest.Start(t)
	coordtest.Run(t, func(t *testing.T) coord.Conn { return dial(t, srv.Addr()) }, faults{})
}

func TestConformanceChroot(t *testing.T) {
	srv := zktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dial(t, srv.Addr()+"/chroot/a")
	p, err := c.CreateEphemeralSequential(ctx, "/dir/n-", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p, "/dir/n-") {
		t.Errorf("sequential path %q is not relative to the chroot", p)
	}
	plain := dial(t, srv.Addr())
	if data, _, err := plain.Get(ctx, "/chroot/a"+p); err != nil || string(data) != "x" {
		t.Errorf("node under the chroot: %q, %v", data, err)
	}
	names, err := c.Children(ctx, "/")
	if err != nil || len(names) != 1 || names[0] != "dir" {
		t.Errorf("children of the chroot = %v, %v", names, err)
	}
	coordtest.Run(t, func(t *testing.T) coord.Conn { return dial(t, srv.Addr()+"/chroot/suite") }, faults{})
}

func TestDialUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	const wait = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	_, err = zkcoord.Dial(ctx, addr, zkcoord.Options{Logger: quiet})
	took := time.Since(start)
	if !errors.Is(err, coord.ErrUnavailable) || !strings.Contains(err.Error(), "zookeeper "+addr+" unreachable") {
		t.Fatalf("dial dead port: %v, want ErrUnavailable naming %s", err, addr)
	}
	// Not a performance bound: Dial must give up with its context, not hang.
	if took > wait+2*time.Second {
		t.Errorf("dial returned %v after its context ended", took-wait)
	}
	t.Log(err)
}

func TestDialBadServers(t *testing.T) {
	for _, s := range []string{"", ",", "127.0.0.1:1/bad//chroot"} {
		_, err := zkcoord.Dial(context.Background(), s, zkcoord.Options{Logger: quiet})
		if !errors.Is(err, coord.ErrInvalid) {
			t.Errorf("dial %q: %v, want ErrInvalid", s, err)
		}
	}
}

// TestServerStopEndsSession: when ZooKeeper goes away, SessionDone fires
// as soon as the client notices, long before the session could expire.
func TestServerStopEndsSession(t *testing.T) {
	srv := zktest.Start(t)
	c := dial(t, srv.Addr())
	done := c.SessionDone()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(sessionTimeout):
		t.Fatalf("SessionDone still open %v after the server stopped", sessionTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, _, err := c.Get(ctx, "/"); !errors.Is(err, coord.ErrUnavailable) {
		t.Errorf("get with the server down: %v, want ErrUnavailable", err)
	}
}

func BenchmarkGet(b *testing.B) {
	srv := zktest.Start(b)
	c := dial(b, srv.Addr())
	ctx := context.Background()
	if _, err := c.Create(ctx, "/bench", []byte("value")); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := c.Get(ctx, "/bench"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUpdateCAS(b *testing.B) {
	srv := zktest.Start(b)
	c := dial(b, srv.Addr())
	ctx := context.Background()
	if _, err := c.Create(ctx, "/bench", []byte("value")); err != nil {
		b.Fatal(err)
	}
	v := coord.Version(0)
	for b.Loop() {
		var err error
		if v, err = c.Update(ctx, "/bench", []byte("value"), v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUpdateSlotTable(b *testing.B) {
	srv := zktest.Start(b)
	cl := coord.NewCluster(dial(b, srv.Addr()), "bench")
	ctx := context.Background()
	if _, err := cl.CreateIfMissing(ctx, coord.ClusterMeta{Slots: 1024, ReplicationFactor: 1}); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		if _, err := cl.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
			t.Owners[i%1024] = []string{"g1", "g2"}[i%2]
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}
