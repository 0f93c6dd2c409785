package zkcoord_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
	"github.com/thunderyurts/thunderyurts/coord/zklocal/zktest"
)

// TestDialFailFast: with FailFast, Dial gives up once every server refused
// the connection instead of retrying until its context ends; a server that
// answers is still dialled.
func TestDialFailFast(t *testing.T) {
	var dead []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead = append(dead, l.Addr().String())
		l.Close() // nothing listens there now
	}
	servers := strings.Join(dead, ",")
	const wait = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	_, err := zkcoord.Dial(ctx, servers, zkcoord.Options{Logger: quiet, FailFast: true})
	took := time.Since(start)
	if !errors.Is(err, coord.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "zookeeper "+servers+" unreachable") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("dial refusing servers: %v, want ErrUnavailable naming them and the refusal", err)
	}
	// Not a performance bound: Dial must not wait for its context.
	if took > wait/2 {
		t.Errorf("dial took %v: it waited for its context", took)
	}

	srv := zktest.Start(t).Addr()
	conn, err := zkcoord.Dial(ctx, dead[0]+","+srv, zkcoord.Options{Logger: quiet, FailFast: true})
	if err != nil {
		t.Fatalf("dial with one live server of two: %v", err)
	}
	conn.Close()
}
