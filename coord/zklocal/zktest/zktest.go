package zktest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord/zklocal"
)

// Start starts a ZooKeeper in a temporary directory of t and stops it at
// cleanup. When ZooKeeper is not installed the test is skipped, unless
// the environment variable CI is set: there a missing ZooKeeper is a failure.
// Any other failure to start fails the test.
func Start(t testing.TB) *zklocal.Server { return StartOn(t, "") }

// StartOn is Start with ZooKeeper bound to host ("" for
// 127.0.0.1), for tests whose nodes live in network namespaces of their own.
func StartOn(t testing.TB, host string) *zklocal.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := zklocal.Start(ctx, zklocal.Options{Dir: t.TempDir(), Host: host, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		if errors.Is(err, zklocal.ErrNotInstalled) && os.Getenv("CI") == "" {
			t.Skipf("skipping: %v (with CI set this fails)", err)
		}
		t.Fatalf("start zookeeper: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop zookeeper: %v", err)
		}
	})
	return s
}

// testWriter sends log lines to t.Log. Start and Stop log only from the
// calling goroutine, so it is never used after the test ends.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
