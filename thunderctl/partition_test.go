package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
)

// netns is a network namespace of the test's own, joined to the host by a
// veth pair: the host side has 10.213.N.1, the namespace 10.213.N.2.
type netns struct {
	name, hostIf    string
	hostIP, innerIP string
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2 (ip) is not installed")
	}
	n := rand.Intn(200) + 20
	ns := &netns{name: fmt.Sprintf("ty-%d-%d", os.Getpid(), n), hostIf: fmt.Sprintf("tyh%d", n),
		hostIP: fmt.Sprintf("10.213.%d.1", n), innerIP: fmt.Sprintf("10.213.%d.2", n)}
	inner := fmt.Sprintf("tyn%d", n)
	steps := [][]string{
		{"netns", "add", ns.name},
		{"-n", ns.name, "link", "set", "lo", "up"},
		{"link", "add", ns.hostIf, "type", "veth", "peer", "name", inner},
		{"link", "set", inner, "netns", ns.name},
		{"addr", "add", ns.hostIP + "/24", "dev", ns.hostIf},
		{"link", "set", ns.hostIf, "up"},
		{"-n", ns.name, "addr", "add", ns.innerIP + "/24", "dev", inner},
		{"-n", ns.name, "link", "set", inner, "up"},
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", ns.hostIf).Run()
		_ = exec.Command("ip", "netns", "del", ns.name).Run()
	})
	for _, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	return ns
}

// cut severs the namespace from the host.
func (ns *netns) cut(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "set", ns.hostIf, "down").CombinedOutput(); err != nil {
		t.Fatalf("cut: %v: %s", err, out)
	}
}

// TestPartitionedPrimaryCannotAcknowledge cuts a primary off from
// ZooKeeper and its followers while a client in its own namespace keeps
// writing to it: nothing it acknowledges may be missing from the new
// primary.
func TestPartitionedPrimaryCannotAcknowledge(t *testing.T) {
	ns, tc, cl, id1 := startNamespacedPrimary(t)
	tc.replica("data-2")
	tc.replica("data-3")
	tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 3 })
	tc.waitServing(cl, 30*time.Second)

	// A writer inside the namespace, reaching the primary locally.
	inner := startInnerWriter(t, ns, tc.zk.Addr(), tc.name)
	inner.waitAcks(t, 300, 15*time.Second)

	cutAt := time.Now()
	ns.cut(t)
	ng := tc.waitGroup(cl, "g1", sessionTimeout+15*time.Second, func(g *coord.Group) bool { return g.Primary != id1 && g.Primary != "" })
	promotedAt := time.Now()
	t.Logf("partitioned primary %s replaced by %s after %s", id1, ng.Primary, promotedAt.Sub(cutAt).Round(time.Millisecond))
	time.Sleep(time.Second) // late acks, if any, would show up now
	acked, last := inner.stop()
	t.Logf("the partitioned primary acknowledged %d writes in all; its last ack came %s after the cut", len(acked), last.Sub(cutAt).Round(time.Millisecond))
	if last.After(promotedAt) {
		t.Errorf("the partitioned primary acknowledged a write after its successor was chosen")
	}
	c := tc.client(cl)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, k := range acked {
		if v, err := c.Get(ctx, []byte(k)); err != nil || string(v) != k {
			t.Fatalf("write %s acknowledged by the partitioned primary is missing: %q, %v", k, v, err)
		}
	}
	// The majority side keeps taking writes.
	if err := c.Put(ctx, []byte("after-partition"), []byte("ok")); err != nil {
		t.Fatal(err)
	}
}

// startNamespacedPrimary runs ZooKeeper on the host's side of a new
// namespace, a coordinator, and a first member of g1 inside the namespace,
// which becomes primary; it returns that member's id.
func startNamespacedPrimary(t *testing.T) (*netns, *testCluster, *coord.Cluster, string) {
	t.Helper()
	ns := newNetns(t)
	tc := newTestClusterOn(t, ns.hostIP)
	tc.coordinator("coord-1")
	p1 := tc.startIn(ns, "data-1", "serve", "data", "--group", "g1", "--dir", tc.dir+"/data-1", "--max-lag", "1s")
	p1.dir = tc.dir + "/data-1"
	cl := tc.coordCluster()
	id1 := nodeIDOf(t, p1)
	tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return g.Primary == id1 })
	return ns, tc, cl, id1
}

// startIn runs a thunderctl daemon inside ns, listening on its address.
func (tc *testCluster) startIn(ns *netns, name string, args ...string) *proc {
	tc.t.Helper()
	p := &proc{addr: fmt.Sprintf("%s:%d", ns.innerIP, 20000+rand.Intn(20000))}
	args = append(append([]string{"netns", "exec", ns.name, daemonBin}, args...), "--listen", p.addr, "--zk", tc.zk.Addr(), "--cluster", tc.name,
		"--session-timeout", sessionTimeout.String())
	tc.launch(p, name, "ip", args...)
	return p
}

// innerWriter is a writer process inside a namespace (this test binary,
// re-run as TestInnerWriter); it prints each acknowledged key.
type innerWriter struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	acked []string
	last  time.Time
	done  chan struct{}
}

func startInnerWriter(t *testing.T, ns *netns, zk, cluster string) *innerWriter {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns.name, os.Args[0], "-test.run=^TestInnerWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), "THUNDER_TEST_INNER_WRITER="+zk+"|"+cluster)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &innerWriter{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if k, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
				w.mu.Lock()
				w.acked, w.last = append(w.acked, k), time.Now()
				w.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-w.done; _ = cmd.Wait() })
	return w
}

func (w *innerWriter) waitAcks(t *testing.T, n int, within time.Duration) {
	t.Helper()
	eventually(t, within, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.acked) < n {
			return fmt.Errorf("inner writer: %d of %d writes acknowledged", len(w.acked), n)
		}
		return nil
	})
}

func (w *innerWriter) stop() ([]string, time.Time) {
	_ = w.cmd.Process.Kill()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.last
}

// TestInnerWriter is not a test: startInnerWriter runs it in a namespace.
func TestInnerWriter(t *testing.T) {
	spec := os.Getenv("THUNDER_TEST_INNER_WRITER")
	if spec == "" {
		t.Skip("helper process for TestPartitionedPrimaryCannotAcknowledge")
	}
	zk, cluster, _ := strings.Cut(spec, "|")
	ctx := context.Background()
	conn, err := zkcoord.Dial(ctx, zk, zkcoord.Options{SessionTimeout: sessionTimeout})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(ctx, coord.NewCluster(conn, cluster), client.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				k := fmt.Sprintf("inner-%d-%07d", w, i)
				if err := c.Put(ctx, []byte(k), []byte(k)); err == nil {
					mu.Lock()
					fmt.Printf("ACK %s\n", k)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
}
