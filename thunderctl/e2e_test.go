package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/procs"
)

// startCluster runs 2 coordinators and 2 single-node groups and waits
// until every slot is served.
func startCluster(t *testing.T) (*testCluster, *coord.Cluster) {
	tc := newTestCluster(t)
	tc.coordinator("coord-1")
	tc.coordinator("coord-2")
	tc.dataNode("data-g1", "g1")
	tc.dataNode("data-g2", "g2")
	cl := tc.coordCluster()
	tc.waitServing(cl, 30*time.Second)
	return tc, cl
}

func TestClusterReadWriteScan(t *testing.T) {
	tc, cl := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Both groups own slots.
	rt, err := cl.Routes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rt.Table.SlotsOf("g1")) == 0 || len(rt.Table.SlotsOf("g2")) == 0 {
		t.Fatalf("slots not spread over both groups: %v", rt.Table.Ranges())
	}

	// 1,000 keys through the CLI, read back through the client package.
	cliKeys := make([]string, 1000)
	for i := range cliKeys {
		cliKeys[i] = fmt.Sprintf("cli-%04d", i)
	}
	parallel(t, 8, len(cliKeys), func(i int) error {
		if _, stderr, code := tc.cli(nil, "put", cliKeys[i], "v-"+cliKeys[i]); code != 0 {
			return fmt.Errorf("put %s: exit %d: %s", cliKeys[i], code, stderr)
		}
		return nil
	})
	c := tc.client(cl)
	for _, k := range cliKeys {
		v, err := c.Get(ctx, []byte(k))
		if err != nil || string(v) != "v-"+k {
			t.Fatalf("get %s = %q, %v", k, v, err)
		}
	}

	// 1,000 keys through the client package, read back through the CLI.
	libKeys := make([]string, 1000)
	for i := range libKeys {
		libKeys[i] = fmt.Sprintf("lib-%04d", i)
	}
	parallel(t, 64, len(libKeys), func(i int) error {
		return c.Put(ctx, []byte(libKeys[i]), []byte("v-"+libKeys[i]))
	})
	for i := 0; i < len(libKeys); i += 10 {
		out, stderr, code := tc.cli(nil, "get", libKeys[i])
		if code != 0 || out != "v-"+libKeys[i]+"\n" {
			t.Fatalf("cli get %s: exit %d out %q err %q", libKeys[i], code, out, stderr)
		}
	}

	// Scan returns every key once, in order, across both groups.
	out, stderr, code := tc.cli(nil, "scan")
	if code != 0 {
		t.Fatalf("scan: exit %d: %s", code, stderr)
	}
	want := append(slices.Clone(cliKeys), libKeys...)
	slices.Sort(want)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("scan returned %d lines, want %d", len(lines), len(want))
	}
	for i, line := range lines {
		k, v, _ := strings.Cut(line, "\t")
		if k != want[i] || v != "v-"+want[i] {
			t.Fatalf("scan line %d = %q, want key %q", i, line, want[i])
		}
	}
	out, _, code = tc.cli(nil, "scan", "--prefix", "lib-00", "--limit", "5")
	if code != 0 || strings.Count(out, "\n") != 5 || !strings.HasPrefix(out, "lib-0000\t") {
		t.Fatalf("scan --prefix --limit: exit %d, %q", code, out)
	}

	// bench --key-slots writes only keys of those slots.
	if _, stderr, code := tc.cli(nil, "bench", "--ops", "300", "--keys", "5000", "--key-slots", "0-9,50", "-o", "json"); code != 0 {
		t.Fatalf("bench --key-slots: exit %d: %s", code, stderr)
	}
	out, _, code = tc.cli(nil, "scan", "--prefix", "k0")
	benched := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(benched) < 10 {
		t.Fatalf("scan of bench's keys: exit %d, %d keys", code, len(benched))
	}
	for _, line := range benched {
		k, _, _ := strings.Cut(line, "\t")
		if slot := coord.SlotOf([]byte(k), len(rt.Table.Owners)); slot > 9 && slot != 50 {
			t.Fatalf("bench --key-slots 0-9,50 wrote %s, of slot %d", k, slot)
		}
	}
	if _, stderr, code := tc.cli(nil, "bench", "--ops", "1", "--key-slots", "64"); code != exitUsage || !strings.Contains(stderr, "not one of the cluster's 64") {
		t.Fatalf("bench --slots 64 of 64 slots: exit %d: %s", code, stderr)
	}
	benchInterrupted(t, tc)

	// Delete, then get exits 3.
	if _, _, code := tc.cli(nil, "del", "cli-0000"); code != 0 {
		t.Fatalf("del exit %d", code)
	}
	if _, stderr, code := tc.cli(nil, "get", "cli-0000"); code != exitNotFound || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("get deleted key: exit %d, stderr %q", code, stderr)
	}

	// Admin status sees both coordinators, both groups and both nodes.
	out, stderr, code = tc.cli(nil, "admin", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("admin status: exit %d: %s", code, stderr)
	}
	var st struct {
		Coordinators []struct{ Role string }
		Groups       []struct{ Name string }
		Nodes        []struct{ ID string }
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("admin status json: %v\n%s", err, out)
	}
	if len(st.Coordinators) != 2 || len(st.Groups) != 2 || len(st.Nodes) != 2 {
		t.Fatalf("admin status: %s", out)
	}
	if out, _, code := tc.cli(nil, "admin", "status"); code != 0 || !strings.Contains(out, "g1") {
		t.Fatalf("admin status table: exit %d\n%s", code, out)
	}
	if out, _, code := tc.cli(nil, "admin", "zk", "--recursive"); code != 0 || !strings.Contains(out, "slots") {
		t.Fatalf("admin zk: exit %d\n%s", code, out)
	}
}

// parallel runs fn(0..n-1) on workers goroutines and fails on the first error.
func parallel(t *testing.T, workers, n int, fn func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

func TestCoordinatorFailover(t *testing.T) {
	tc, cl := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := tc.client(cl)

	leader := tc.leader(ctx, cl)
	killedAt := time.Now()
	leader.Kill()
	// The standby leads once the dead leader's session expires.
	eventually(t, sessionTimeout+5*time.Second, func() error {
		coords, err := cl.Coordinators(ctx)
		if err == nil && (len(coords) != 1 || coords[0].Addr == leader.addr) {
			err = fmt.Errorf("no standby took over: coordinators %v", coords)
		}
		return err
	})
	t.Logf("a standby leads %s after the leader was killed", time.Since(killedAt).Round(time.Millisecond))

	// With no coordinator at all, reads and writes keep working.
	for _, p := range tc.procsNamed("coord-") {
		p.Kill()
	}
	for i := 0; i < 200; i++ {
		k := []byte(fmt.Sprintf("nocoord-%d", i))
		if err := c.Put(ctx, k, k); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 200; i++ {
		k := []byte(fmt.Sprintf("nocoord-%d", i))
		if v, err := c.Get(ctx, k); err != nil || !bytes.Equal(v, k) {
			t.Fatalf("get %s = %q, %v", k, v, err)
		}
	}
	if _, stderr, code := tc.cli(nil, "put", "via-cli", "works"); code != 0 {
		t.Fatalf("cli put with no coordinator: exit %d: %s", code, stderr)
	}
	if out, _, code := tc.cli(nil, "get", "via-cli"); code != 0 || out != "works\n" {
		t.Fatalf("cli get with no coordinator: exit %d %q", code, out)
	}
}

// leader returns the process of the leading coordinator.
func (tc *testCluster) leader(ctx context.Context, cl *coord.Cluster) *proc {
	tc.t.Helper()
	coords, err := cl.Coordinators(ctx)
	if err != nil || len(coords) == 0 {
		tc.t.Fatalf("coordinators: %v %v", coords, err)
	}
	for _, p := range tc.procsNamed("coord-") {
		if p.addr == coords[0].Addr {
			return p
		}
	}
	tc.t.Fatalf("leader %v is not one of ours", coords[0])
	return nil
}

func (tc *testCluster) procsNamed(prefix string) []*proc {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	var out []*proc
	for name, p := range tc.procs {
		if strings.HasPrefix(name, prefix) {
			out = append(out, p)
		}
	}
	return out
}

func TestDataNodeKillKeepsAcknowledgedWrites(t *testing.T) {
	tc, cl := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := tc.client(cl)

	// Writers put keys until told to stop; only acknowledged ones count.
	var mu sync.Mutex
	var acked [][]byte
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := []byte(fmt.Sprintf("w%02d-%06d", w, i))
				octx, ocancel := context.WithTimeout(ctx, time.Second)
				err := c.Put(octx, k, k)
				ocancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, k)
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(time.Second)
	victim := tc.procsNamed("data-g1")[0]
	victim.Kill()
	time.Sleep(300 * time.Millisecond)
	tc.restart(victim)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	tc.waitServing(cl, 30*time.Second)

	t.Logf("%d writes acknowledged around the crash", len(acked))
	if len(acked) < 100 {
		t.Fatalf("too few acknowledged writes (%d) to prove anything", len(acked))
	}
	for _, k := range acked {
		v, err := c.Get(ctx, k)
		if err != nil || !bytes.Equal(v, k) {
			t.Fatalf("acknowledged write %s lost after SIGKILL: %q, %v", k, v, err)
		}
	}
}

func TestBadInput(t *testing.T) {
	tc, cl := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := tc.client(cl)

	oneLineError := func(name, stderr string) {
		t.Helper()
		if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "thunderctl: ") {
			t.Errorf("%s: want one error line, got %q", name, stderr)
		}
	}
	cases := []struct {
		name  string
		stdin []byte
		args  []string
		code  int
	}{
		{"empty key", nil, []string{"put", "", "v"}, exitUsage},
		{"4097-byte key", nil, []string{"put", strings.Repeat("k", 4097), "v"}, exitUsage},
		{"oversized value", bytes.Repeat([]byte("v"), 4<<20+1), []string{"put", "big", "-"}, exitUsage},
		{"unknown command", nil, []string{"frobnicate"}, exitUsage},
		{"unknown flag", nil, []string{"get", "--bogus", "k"}, exitUsage},
		{"missing argument", nil, []string{"get"}, exitUsage},
		{"unknown admin command", nil, []string{"admin", "frob"}, exitUsage},
		{"bad output format", nil, []string{"admin", "status", "-o", "yaml"}, exitUsage},
		{"absent key", nil, []string{"get", "never-written"}, exitNotFound},
	}
	for _, tt := range cases {
		_, stderr, code := tc.cli(tt.stdin, tt.args...)
		if code != tt.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", tt.name, code, tt.code, stderr)
		}
		oneLineError(tt.name, stderr)
	}
	// Nothing was written by the refused puts.
	for _, k := range []string{"big", "v"} {
		if _, err := c.Get(ctx, []byte(k)); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("get %q after refused put: %v", k, err)
		}
	}

	// ZooKeeper unreachable: exit 1 within the timeout, one line.
	start := time.Now()
	deadZK, err := procs.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runCLI(t, nil, "--zk", deadZK, "--timeout", "2s", "get", "k")
	if code != exitFailed || time.Since(start) > 10*time.Second {
		t.Errorf("dead zookeeper: exit %d after %s, want 1 quickly (stderr %q)", code, time.Since(start), stderr)
	}
	oneLineError("dead zookeeper", stderr)
}

// TestConfigPrecedence: a flag (before or after the command) wins over the
// environment, which wins over the config file. A dead ZooKeeper address
// shows which one was used.
func TestConfigPrecedence(t *testing.T) {
	conf := t.TempDir() + "/thunder.conf"
	if err := os.WriteFile(conf, []byte("# test\nzk = 127.0.0.1:1\ntimeout = 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	used := func(env string, args ...string) string {
		t.Helper()
		if env == "" {
			os.Unsetenv("THUNDER_ZK")
		} else {
			t.Setenv("THUNDER_ZK", env)
		}
		_, stderr, code := runCLI(t, nil, args...)
		if code != exitFailed {
			t.Fatalf("%v: exit %d (%s)", args, code, stderr)
		}
		return stderr
	}
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"", []string{"--config", conf, "get", "k"}, "127.0.0.1:1 "},
		{"127.0.0.1:2", []string{"--config", conf, "get", "k"}, "127.0.0.1:2 "},
		{"127.0.0.1:2", []string{"--config", conf, "--zk", "127.0.0.1:3", "get", "k"}, "127.0.0.1:3 "},
		{"127.0.0.1:2", []string{"--config", conf, "get", "--zk", "127.0.0.1:4", "k"}, "127.0.0.1:4 "},
	} {
		if got := used(tc.env, tc.args...); !strings.Contains(got, tc.want) {
			t.Errorf("THUNDER_ZK=%q %v used the wrong ZooKeeper: %s", tc.env, tc.args, got)
		}
	}
}

// benchInterrupted: SIGINT ends a long bench early, with the figures of
// what ran and exit 0.
func benchInterrupted(t *testing.T, tc *testCluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, thunderctlBin, "--zk", tc.zk.Addr(), "--cluster", tc.name, "bench", "--duration", "2m", "--clients", "4", "-o", "json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }() // on every failure path; a no-op once it exited
	time.Sleep(2 * time.Second)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("bench after SIGINT: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("bench did not end within 30 s of SIGINT\n%s", stderr.String())
	}
	var res struct {
		Ops     int64   `json:"ops"`
		Elapsed float64 `json:"elapsed_seconds"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res.Ops == 0 || res.Elapsed <= 0 || res.Elapsed > 30 {
		t.Fatalf("bench after SIGINT printed %+v (%v):\n%s", res, err, stdout.String())
	}
	if !strings.Contains(stderr.String(), "bench: interrupted after ") {
		t.Fatalf("bench after SIGINT said %q", stderr.String())
	}
}
