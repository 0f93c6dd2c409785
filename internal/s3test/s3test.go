// Package s3test runs a real S3-compatible server (gofakes3 in a process of
// its own, built from ./s3server) on a loopback port for tests: the S3 code
// under test talks HTTP to it exactly as to AWS or MinIO, no client mock.
//
//	srv := s3test.Start(t, "backups")
//	store, err := backup.OpenStore(ctx, "s3://backups/nightly", backup.StoreOptions{S3Endpoint: srv.Endpoint})
//
// The server accepts any credentials. Start leaves the environment alone
// (tests that set it cannot run in parallel); processes started by a test
// get the server's AWS variables from Env.
package s3test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/internal/sysproc"
)

// Credentials the server is started with; it accepts any.
const (
	AccessKey = "thunderyurts-test"
	SecretKey = "thunderyurts-test-secret"
	Region    = "us-east-1"
)

// Server is a running S3 server.
type Server struct {
	// Endpoint is the server's URL, http://127.0.0.1:PORT.
	Endpoint string
}

// Env returns the AWS environment variables that point a child process at
// the server: credentials, region and AWS_ENDPOINT_URL.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_REGION=" + Region,
		"AWS_ENDPOINT_URL=" + s.Endpoint,
	}
}

// Start builds (once per test binary) and runs the server with the given
// buckets created, waits until it listens, and kills it when t ends. It
// sets the server's credentials and region in the environment for the rest
// of t (and the processes it starts), so S3 clients sign their requests as
// they do against a real store.
func Start(t testing.TB, buckets ...string) *Server {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", SecretKey)
	t.Setenv("AWS_REGION", Region)
	bin := build(t)
	cmd := exec.Command(bin, "-bucket", strings.Join(buckets, ","))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	// Never outlive the test binary, even if it crashes before cleanup.
	if err := sysproc.StartChild(cmd); err != nil {
		t.Fatalf("s3test: start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait() // killed on purpose
	})
	line := make(chan string, 1)
	go func() { // ends when the process's stdout closes, at the latest at cleanup
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		for sc.Scan() { // keep the pipe drained
		}
	}()
	select {
	case l, ok := <-line:
		endpoint, found := strings.CutPrefix(l, "listening on ")
		if !ok || !found {
			t.Fatalf("s3test: the server did not start (first line %q)", l)
		}
		t.Logf("s3test: S3 server at %s, buckets %v", endpoint, buckets)
		return &Server{Endpoint: endpoint}
	case <-time.After(time.Minute):
		t.Fatal("s3test: the server did not start within a minute")
	}
	return nil
}

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// build compiles ./s3server once per test binary into a directory shared by
// all of them (a rename puts each build in place, so test binaries running
// side by side never run a half-written file) and returns its path.
func build(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("thunderyurts-test-%d", os.Getuid()))
		if buildErr = os.MkdirAll(dir, 0o755); buildErr != nil {
			return
		}
		bin := filepath.Join(dir, "s3server")
		tmp := fmt.Sprintf("%s.%d", bin, os.Getpid())
		out, err := exec.Command("go", "build", "-o", tmp, "github.com/thunderyurts/thunderyurts/internal/s3test/s3server").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build s3server: %v\n%s", err, out)
			return
		}
		if buildErr = os.Rename(tmp, bin); buildErr == nil {
			buildBin = bin
		}
	})
	if buildErr != nil {
		t.Fatalf("s3test: %v", buildErr)
	}
	return buildBin
}
