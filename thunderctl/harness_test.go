package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/thunderyurts/thunderyurts/internal/poll"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
	"github.com/thunderyurts/thunderyurts/coord/zklocal"
	"github.com/thunderyurts/thunderyurts/coord/zklocal/zktest"
	"github.com/thunderyurts/thunderyurts/daemon/procs"
)

// The end-to-end tests run the real thunderctl binary against a real
// ZooKeeper. `make e2e` passes the binary in THUNDERCTL_BIN, and a build
// with the race detector for the daemons in THUNDERCTL_DAEMON_BIN (the
// many short CLI runs use the plain one); otherwise TestMain builds one.
var thunderctlBin, daemonBin string

func TestMain(m *testing.M) {
	thunderctlBin = os.Getenv("THUNDERCTL_BIN")
	cleanup := func() {}
	if thunderctlBin == "" {
		dir, err := os.MkdirTemp("", "thunderctl-e2e")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cleanup = func() { os.RemoveAll(dir) }
		thunderctlBin = filepath.Join(dir, "thunderctl")
		out, err := exec.Command("go", "build", "-ldflags", stampFlags(), "-o", thunderctlBin, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build thunderctl: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	if daemonBin = os.Getenv("THUNDERCTL_DAEMON_BIN"); daemonBin == "" {
		daemonBin = thunderctlBin
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// stampFlags stamps the git commit and its date as make build does.
func stampFlags() string {
	git := exec.Command("git", "log", "-1", "--format=%H %cd", "--date=format-local:%Y-%m-%dT%H:%M:%SZ")
	git.Env = append(os.Environ(), "TZ=UTC")
	out, err := git.Output()
	commit, date, ok := strings.Cut(strings.TrimSpace(string(out)), " ")
	if err != nil || !ok {
		return ""
	}
	return fmt.Sprintf("-X main.commit=%s -X main.date=%s", commit, date)
}

// sessionTimeout is short so failover tests run fast.
const sessionTimeout = 2 * time.Second

// testCluster is a cluster of real daemon processes on loopback.
type testCluster struct {
	t     testing.TB
	zk    *zklocal.Server
	dir   string
	name  string
	mu    sync.Mutex
	procs map[string]*proc
}

// proc is one daemon of the cluster.
type proc struct {
	*procs.Proc
	dir  string // data directory of a data node
	addr string
}

func newTestCluster(t testing.TB) *testCluster { return newTestClusterOn(t, "") }

// newTestClusterOn binds ZooKeeper to host ("" for loopback).
func newTestClusterOn(t testing.TB, host string) *testCluster {
	t.Helper()
	tc := &testCluster{t: t, zk: zktest.StartOn(t, host), dir: t.TempDir(), name: "e2e", procs: map[string]*proc{}}
	t.Cleanup(tc.stop)
	return tc
}

// another is a second cluster, named name, on the same ZooKeeper.
func (tc *testCluster) another(name string) *testCluster {
	o := &testCluster{t: tc.t, zk: tc.zk, dir: tc.t.TempDir(), name: name, procs: map[string]*proc{}}
	tc.t.Cleanup(o.stop)
	return o
}

// stop kills every process and reports data races, and the logs of a
// failed test.
func (tc *testCluster) stop() {
	t := tc.t
	tc.mu.Lock()
	defer tc.mu.Unlock()
	for _, p := range tc.procs {
		p.Kill()
	}
	for _, p := range tc.procs {
		if b, err := os.ReadFile(p.Log); err == nil && bytes.Contains(b, []byte("WARNING: DATA RACE")) {
			t.Errorf("%s hit a data race:\n%s", p.Name, b)
		}
	}
	if t.Failed() {
		for _, p := range tc.procs {
			if b, err := os.ReadFile(p.Log); err == nil {
				t.Logf("--- log of %s ---\n%s", p.Name, tail(string(b), 40))
			}
		}
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// start runs `thunderctl serve ...` as a child process named name, with the
// short sessionTimeout unless args set one.
func (tc *testCluster) start(name string, args ...string) *proc {
	tc.t.Helper()
	addr, err := procs.FreeAddr()
	if err != nil {
		tc.t.Fatal(err)
	}
	p := &proc{addr: addr}
	args = append(append([]string{}, args...), "--listen", p.addr, "--zk", tc.zk.Addr(), "--cluster", tc.name)
	if !slices.Contains(args, "--session-timeout") {
		args = append(args, "--session-timeout", sessionTimeout.String())
	}
	tc.launch(p, name, daemonBin, args...)
	return p
}

// launch runs program (thunderctl, or ip for a process in a namespace) as p.
func (tc *testCluster) launch(p *proc, name, program string, args ...string) {
	tc.t.Helper()
	var err error
	if p.Proc, err = procs.Start(name, program, args, filepath.Join(tc.dir, name+".log")); err != nil {
		tc.t.Fatal(err)
	}
	tc.mu.Lock()
	tc.procs[name] = p
	tc.mu.Unlock()
}

func (tc *testCluster) coordinator(name string) *proc {
	return tc.start(name, "serve", "coord", "--slots", "64", "--assign-delay", "500ms", "--replication-factor", "1")
}

func (tc *testCluster) dataNode(name, group string, extra ...string) *proc {
	args := append([]string{"serve", "data", "--group", group, "--dir", filepath.Join(tc.dir, name)}, extra...)
	p := tc.start(name, args...)
	p.dir = filepath.Join(tc.dir, name)
	return p
}

// nodeIDOf reads the id a data node keeps in its directory, waiting for
// a node that is still starting to write it.
func nodeIDOf(t testing.TB, p *proc) string {
	t.Helper()
	var id string
	eventually(t, 5*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(p.dir, "node-id"))
		id = strings.TrimSpace(string(b))
		return err
	})
	return id
}

// restart starts p again with the same arguments (same address and dir).
func (tc *testCluster) restart(p *proc) {
	tc.t.Helper()
	if err := p.Restart(); err != nil {
		tc.t.Fatal(err)
	}
}

// eventually polls cond until it returns nil, and fails the test with its
// last error when that takes longer than within. Every wait of the
// end-to-end tests goes through it.
func eventually(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	poll.UntilNil(t, within, cond)
}

// coordCluster opens a ZooKeeper session for the test's own checks.
func (tc *testCluster) coordCluster() *coord.Cluster {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := zkcoord.Dial(ctx, tc.zk.Addr(), zkcoord.Options{SessionTimeout: sessionTimeout})
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(func() { _ = conn.Close() })
	return coord.NewCluster(conn, tc.name)
}

// waitServing waits until every slot has a registered primary.
func (tc *testCluster) waitServing(cl *coord.Cluster, within time.Duration) {
	tc.t.Helper()
	eventually(tc.t, within, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		rt, err := cl.Routes(ctx)
		if err == nil && !rt.Serving() {
			err = errors.New("some slot has no registered primary")
		}
		return err
	})
}

// waitGroup waits until ok(group) holds and returns that group state.
func (tc *testCluster) waitGroup(cl *coord.Cluster, name string, within time.Duration, ok func(*coord.Group) bool) *coord.Group {
	tc.t.Helper()
	var g *coord.Group
	eventually(tc.t, within, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		cur, _, err := cl.Group(ctx, name)
		if err != nil {
			return err
		}
		if g = cur; !ok(g) {
			return fmt.Errorf("group %s is %+v", name, g)
		}
		return nil
	})
	return g
}

func (tc *testCluster) client(cl *coord.Cluster) *client.Client {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, cl, client.Options{Timeout: 10 * time.Second})
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(func() { _ = c.Close() })
	return c
}

// cli runs a thunderctl command against the cluster and returns its
// stdout, stderr and exit code.
func (tc *testCluster) cli(stdin []byte, args ...string) (string, string, int) {
	tc.t.Helper()
	return runCLI(tc.t, stdin, append([]string{"--zk", tc.zk.Addr(), "--cluster", tc.name}, args...)...)
}

func runCLI(t testing.TB, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	return runCLIWithin(t, 60*time.Second, stdin, args...)
}

// runCLIWithin is runCLI for a command that may take up to within.
func runCLIWithin(t testing.TB, within time.Duration, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, thunderctlBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run thunderctl %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}
