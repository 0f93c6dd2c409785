package zklocal_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
	"github.com/thunderyurts/thunderyurts/coord/zklocal"
	"github.com/thunderyurts/thunderyurts/coord/zklocal/zktest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestStartStop(t *testing.T) {
	srv := zktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	host, port, err := net.SplitHostPort(srv.Addr())
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr() = %q", srv.Addr())
	}
	if !zklocal.Ruok(ctx, srv.Addr()) {
		t.Fatal("server does not answer ruok")
	}

	// Data survives a stop and a start on the same directory and port.
	conn, err := zkcoord.Dial(ctx, srv.Addr(), zkcoord.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Create(ctx, "/kept", []byte("x")); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	pid := srv.Pid()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d still exists after Stop (kill 0: %v)", pid, err)
	}
	p, _ := strconv.Atoi(port)
	again, err := zklocal.Start(ctx, zklocal.Options{Dir: srv.Dir(), Port: p, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Stop()
	conn, err = zkcoord.Dial(ctx, again.Addr(), zkcoord.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if data, _, err := conn.Get(ctx, "/kept"); err != nil || string(data) != "x" {
		t.Errorf("after restart: %q, %v", data, err)
	}
}

func TestOwnDirRemoved(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := zklocal.Start(ctx, zklocal.Options{Logger: quiet})
	if errors.Is(err, zklocal.ErrNotInstalled) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := srv.Dir()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary directory %s left behind (%v)", dir, err)
	}
}

// TestStartReportsEarlyExit: a server that dies while starting (its port is
// taken) fails Start at once, with the end of its log.
func TestStartReportsEarlyExit(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := zklocal.Start(ctx, zklocal.Options{Dir: t.TempDir(), Port: l.Addr().(*net.TCPAddr).Port, Logger: quiet})
	if errors.Is(err, zklocal.ErrNotInstalled) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err == nil {
		srv.Stop()
		t.Fatal("started on a port that is taken")
	}
	t.Log(err)
}
