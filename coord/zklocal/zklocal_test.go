package zklocal_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// TestInstall: a ZooKeeper release directory (lib/ and conf/), given as
// Options.Install or $ZOOKEEPER_HOME, runs; the server's own log lands in
// zookeeper.log in its directory; a directory without a server jar is
// ErrNotInstalled. The release here is made of the Debian package's jars.
func TestInstall(t *testing.T) {
	for _, jar := range []string{"/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar"} {
		if _, err := os.Stat(jar); err != nil {
			t.Skipf("needs the Debian packages: %v", err)
		}
	}
	release := t.TempDir()
	for _, dir := range []string{"lib", "conf"} {
		if err := os.Mkdir(filepath.Join(release, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, jar := range map[string]string{"zookeeper-3.8.0.jar": "zookeeper.jar", "slf4j-simple-1.7.jar": "slf4j-simple.jar"} {
		if err := os.Symlink(filepath.Join("/usr/share/java", jar), filepath.Join(release, "lib", link)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		opts zklocal.Options
		env  string
	}{
		{"Options.Install", zklocal.Options{Install: release}, ""},
		{"ZOOKEEPER_HOME", zklocal.Options{}, release},
		{"Debian package", zklocal.Options{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("ZOOKEEPER_HOME", tc.env)
			tc.opts.Dir, tc.opts.Logger = t.TempDir(), quiet
			srv, err := zklocal.Start(ctx, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Stop()
			log, err := os.ReadFile(filepath.Join(srv.Dir(), "zookeeper.log"))
			if err != nil || !strings.Contains(string(log), "org.apache.zookeeper.server") {
				t.Errorf("zookeeper.log holds no server log lines (%v):\n%s", err, log)
			}
		})
	}
	_, err := zklocal.Start(ctx, zklocal.Options{Install: t.TempDir(), Logger: quiet})
	if !errors.Is(err, zklocal.ErrNotInstalled) || !strings.Contains(err.Error(), "no zookeeper-*.jar") {
		t.Errorf("Start on an empty directory: %v, want ErrNotInstalled naming the missing jar", err)
	}
}
