package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// The fault tests repeat their fault THUNDER_FAULT_ROUNDS times (default
// 2) in one cluster, with one long-lived client whose whole history is
// checked at the end.
const defaultFaultRounds = 2

// resumeBound is how soon after a primary went silent the client must be
// writing again: the session expires, the coordinator promotes an in-sync
// member, and the client follows the new route.
const resumeBound = sessionTimeout + 2*time.Second

// TestFrozenPrimaryClientResumes freezes the primary (SIGSTOP) past its
// session timeout, round after round, while a long-lived client writes and
// reads: the client resumes on the new primary within the session timeout
// plus 2 s, and the whole history is linearizable with no stale read.
func TestFrozenPrimaryClientResumes(t *testing.T) {
	rounds := faultCount(t, "THUNDER_FAULT_ROUNDS", defaultFaultRounds)
	tc, cl := startGroup(t, 3)
	l := startOpLog(t, tc.client(cl), 8, 8)
	for round := 1; round <= rounds; round++ {
		g := tc.waitGroup(cl, "g1", time.Minute, func(g *coord.Group) bool { return len(g.ISR) == 3 })
		l.waitProgress(t, 50, 20*time.Second)
		old := tc.procOf(g.Primary)
		frozeAt := time.Now()
		if err := old.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		ng := tc.waitGroup(cl, "g1", sessionTimeout+15*time.Second, func(ng *coord.Group) bool { return ng.Primary != g.Primary && ng.Primary != "" })
		promoted := time.Since(frozeAt)
		took := l.waitResumed(t, frozeAt, sessionTimeout+15*time.Second)
		// Hold it past the session timeout before it runs again.
		time.Sleep(time.Until(frozeAt.Add(sessionTimeout + time.Second)))
		if err := old.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: froze %s; %s promoted (epoch %d, seen after %s); client resumed after %s",
			round, g.Primary, ng.Primary, ng.Epoch, promoted.Round(time.Millisecond), took.Round(time.Millisecond))
		if took > resumeBound {
			t.Errorf("round %d: the client resumed %s after the freeze, want within %s", round, took.Round(time.Millisecond), resumeBound)
		}
		tc.waitGroup(cl, "g1", time.Minute, func(ng *coord.Group) bool { return slices.Contains(ng.ISR, g.Primary) })
	}
	l.waitProgress(t, 50, 20*time.Second)
	l.check(t)
}

// TestPartitionedPrimaryClientResumes cuts the primary's network (it runs
// in a namespace of its own) round after round while a long-lived client
// on the host writes and reads: as with a frozen primary, the client
// resumes within the session timeout plus 2 s and the history is
// linearizable with no stale read. Between rounds the link is restored,
// the node catches up and is made primary again.
func TestPartitionedPrimaryClientResumes(t *testing.T) {
	rounds := faultCount(t, "THUNDER_FAULT_ROUNDS", defaultFaultRounds)
	ns, tc, cl, id1 := startNamespacedPrimary(t)
	// The other members listen on the host's side of the link, so the
	// partitioned node can follow them once the link is back.
	for _, name := range []string{"data-2", "data-3"} {
		tc.replicaWith(daemonBin, fmt.Sprintf("%s:%d", ns.hostIP, 20000+rand.Intn(12000)), name)
	}
	tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 3 })
	tc.waitServing(cl, 30*time.Second)
	l := startOpLog(t, tc.client(cl), 8, 8)
	for round := 1; round <= rounds; round++ {
		g := tc.waitGroup(cl, "g1", time.Minute, func(g *coord.Group) bool { return len(g.ISR) == 3 })
		if g.Primary != id1 {
			// The role goes back to the node once it is registered again
			// in its new session: a primary that is not registered is
			// replaced by the coordinator at once.
			waitRegistered(t, cl, id1)
			if _, stderr, code := tc.cli(nil, "admin", "failover", "--group", "g1", "--to", id1); code != 0 {
				t.Fatalf("round %d: hand the role back to %s: exit %d: %s", round, id1, code, stderr)
			}
			g = tc.waitGroup(cl, "g1", time.Minute, func(g *coord.Group) bool { return g.Primary == id1 && len(g.ISR) == 3 })
		}
		l.waitProgress(t, 50, 20*time.Second)
		cutAt := time.Now()
		ns.cut(t)
		if cur := tc.waitGroup(cl, "g1", time.Second, func(*coord.Group) bool { return true }); cur.Primary != id1 {
			t.Fatalf("round %d: the primary moved from %s to %s before the cut", round, id1, cur.Primary)
		}
		ng := tc.waitGroup(cl, "g1", sessionTimeout+15*time.Second, func(ng *coord.Group) bool { return ng.Primary != id1 && ng.Primary != "" })
		promoted := time.Since(cutAt)
		took := l.waitResumed(t, cutAt, sessionTimeout+15*time.Second)
		time.Sleep(time.Until(cutAt.Add(sessionTimeout + time.Second)))
		ns.heal(t)
		t.Logf("round %d: cut %s off; %s promoted (epoch %d, seen after %s); client resumed after %s",
			round, id1, ng.Primary, ng.Epoch, promoted.Round(time.Millisecond), took.Round(time.Millisecond))
		if took > resumeBound {
			t.Errorf("round %d: the client resumed %s after the cut, want within %s", round, took.Round(time.Millisecond), resumeBound)
		}
		tc.waitGroup(cl, "g1", time.Minute, func(ng *coord.Group) bool { return slices.Contains(ng.ISR, id1) })
	}
	l.waitProgress(t, 50, 20*time.Second)
	l.check(t)
}

// waitRegistered waits until node id is registered in the cluster.
func waitRegistered(t *testing.T, cl *coord.Cluster, id string) {
	t.Helper()
	eventually(t, time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		nodes, err := cl.Nodes(ctx)
		if err == nil && !slices.ContainsFunc(nodes, func(n coord.NodeInfo) bool { return n.ID == id }) {
			err = fmt.Errorf("node %s is not registered", id)
		}
		return err
	})
}

// heal joins the namespace to the host again after cut.
func (ns *netns) heal(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "set", ns.hostIf, "up").CombinedOutput(); err != nil {
		t.Fatalf("heal: %v: %s", err, out)
	}
}

// replicaWith runs a member of g1 from program (the daemon build, or the
// plain one where the race detector's memory would be in the way)
// listening on addr.
func (tc *testCluster) replicaWith(program, addr, name string) *proc {
	tc.t.Helper()
	p := &proc{addr: addr, dir: filepath.Join(tc.dir, name)}
	tc.launch(p, name, program, "serve", "data", "--group", "g1", "--dir", p.dir, "--max-lag", "1s",
		"--listen", p.addr, "--zk", tc.zk.Addr(), "--cluster", tc.name, "--session-timeout", sessionTimeout.String())
	return p
}

// TestDiskFull fills the disk under a primary's store while writes run: the
// group fails over within the session timeout plus 1 s and loses no
// acknowledged write. Then a secondary's disk fills and is freed again: it
// leaves the in-sync set and rejoins it without a restart.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	tc := newTestCluster(t)
	tc.coordinator("coord-1")
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("data-%d", i)
		mountTmpfs(t, tc, filepath.Join(tc.dir, name), "32m")
		tc.replica(name)
	}
	cl := tc.coordCluster()
	tc.waitServing(cl, 30*time.Second)
	g := tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 3 })
	c := tc.client(cl)
	w := startWriter(c, 8)
	w.waitProgress(t, 300, 20*time.Second)

	// The primary's disk fills up.
	primary := tc.procOf(g.Primary)
	fullAt := fillDisk(t, primary.dir)
	ng := tc.waitGroup(cl, "g1", sessionTimeout+15*time.Second, func(ng *coord.Group) bool { return ng.Primary != g.Primary && ng.Primary != "" })
	took := time.Since(fullAt)
	t.Logf("disk full under primary %s: %s took over after %s (epoch %d → %d)", g.Primary, ng.Primary, took.Round(time.Millisecond), g.Epoch, ng.Epoch)
	if took > sessionTimeout+time.Second {
		t.Errorf("failover after a full disk took %s, want within %s", took.Round(time.Millisecond), sessionTimeout+time.Second)
	}
	w.waitProgress(t, 300, 20*time.Second)
	freeDisk(t, primary.dir)
	tc.waitGroup(cl, "g1", time.Minute, func(g3 *coord.Group) bool { return slices.Contains(g3.ISR, g.Primary) })
	t.Logf("the old primary %s rejoined the in-sync set after its disk was freed, without a restart", g.Primary)

	// A secondary's disk fills up, then is freed.
	g = tc.waitGroup(cl, "g1", time.Minute, func(g *coord.Group) bool { return len(g.ISR) == 3 })
	secondaryID := g.ISR[slices.IndexFunc(g.ISR, func(id string) bool { return id != g.Primary })]
	secondary := tc.procOf(secondaryID)
	fillDisk(t, secondary.dir)
	tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return !slices.Contains(g.ISR, secondaryID) })
	w.waitProgress(t, 300, 20*time.Second)
	freedAt := time.Now()
	freeDisk(t, secondary.dir)
	tc.waitGroup(cl, "g1", time.Minute, func(g *coord.Group) bool { return slices.Contains(g.ISR, secondaryID) })
	t.Logf("secondary %s left the in-sync set on a full disk and rejoined %s after it was freed", secondaryID, time.Since(freedAt).Round(time.Millisecond))
	for _, p := range []*proc{primary, secondary} {
		if st := p.ExitState(); st != "" {
			t.Errorf("%s exited (%s): a full disk must not stop the process", p.Name, st)
		}
	}
	w.waitProgress(t, 100, 20*time.Second)
	w.halt()
	w.verify(t, c)
}

// mountTmpfs mounts a tmpfs of size at dir for the test; it is unmounted
// after the cluster's processes are killed.
func mountTmpfs(t *testing.T, tc *testCluster, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		for _, p := range tc.procsNamed("data-") {
			p.Kill()
		}
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// fillDisk writes a file into dir until its file system is full, and
// returns when it was.
func fillDisk(t *testing.T, dir string) time.Time {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	// Whatever is left is smaller than a chunk: take it too.
	for {
		if _, err := f.Write(chunk[:4096]); err != nil {
			return time.Now()
		}
	}
}

func freeDisk(t *testing.T, dir string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
}

// TestChaosKills SIGKILLs random data nodes, primaries and secondaries,
// and restarts them, THUNDER_CHAOS_KILLS times (default 6), while writers
// use a client with default settings: no call fails, no acknowledged write
// is lost, and the history is linearizable.
func TestChaosKills(t *testing.T) {
	kills := faultCount(t, "THUNDER_CHAOS_KILLS", 6)
	tc, cl := startGroup(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, cl, client.Options{}) // the default timeout
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	l := startOpLog(t, c, 8, 8)
	w := startWriter(c, 4)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	primaries := 0
	for kill := 1; kill <= kills; kill++ {
		// Never take the last in-sync member: that needs an operator.
		g := tc.waitGroup(cl, "g1", time.Minute, func(g *coord.Group) bool { return len(g.ISR) == 3 })
		l.waitProgress(t, 20, 30*time.Second)
		victim := g.ISR[rng.Intn(len(g.ISR))]
		p := tc.procOf(victim)
		p.Kill()
		if victim == g.Primary {
			primaries++
			tc.waitGroup(cl, "g1", sessionTimeout+15*time.Second, func(ng *coord.Group) bool { return ng.Primary != victim && ng.Primary != "" })
		} else {
			time.Sleep(time.Duration(rng.Intn(1500)) * time.Millisecond)
		}
		tc.restart(p)
	}
	tc.waitGroup(cl, "g1", time.Minute, func(g *coord.Group) bool { return len(g.ISR) == 3 })
	l.waitProgress(t, 50, 30*time.Second)
	w.halt()
	t.Logf("%d kills, %d of them primaries; the nodes answered %d retried writes from their first attempt", kills, primaries, retriesAnswered(t, tc))
	l.halt()
	if len(l.failed) > 0 {
		t.Errorf("%d client calls failed; the first: %s", len(l.failed), l.failed[0])
	}
	w.verify(t, c)
	l.check(t)
}

// retriesAnswered sums, over the data nodes' logs, the retried writes they
// answered from their first attempt instead of writing them again.
func retriesAnswered(t *testing.T, tc *testCluster) int {
	sum := 0
	for _, p := range tc.procsNamed("data-") {
		b, err := os.ReadFile(p.Log)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, "answered retried writes") {
				continue
			}
			if _, after, ok := strings.Cut(line, " writes="); ok {
				n, _ := strconv.Atoi(strings.Fields(after)[0])
				sum += n
			}
		}
	}
	return sum
}

// TestRetryAcrossFailoverTakesEffectOnce plays the A, B, A case with real
// processes: a tagged put (as a client sends it) is acknowledged by the
// primary, so every in-sync replica holds it; the primary is killed; once
// a successor leads, another client writes the key; then the first put is
// sent again with its tag, as a client that never heard the answer
// would. The retry is answered OK and the key keeps the later value: the
// put took effect once.
func TestRetryAcrossFailoverTakesEffectOnce(t *testing.T) {
	tc, cl := startGroup(t, 3)
	g := tc.waitGroup(cl, "g1", time.Minute, func(g *coord.Group) bool { return len(g.ISR) == 3 })
	first := &wire.Request{Op: wire.Op_PUT, Key: []byte("k"), Value: []byte("A"), ClientId: 0x5eed, ClientSeq: 1}
	if r := rawCall(t, tc.procOf(g.Primary).addr, first)[0]; r.Code != wire.Code_OK {
		t.Fatalf("first attempt: %v %s", r.Code, r.Message)
	}
	tc.procOf(g.Primary).Kill()
	ng := tc.waitGroup(cl, "g1", sessionTimeout+15*time.Second, func(ng *coord.Group) bool { return ng.Primary != g.Primary && ng.Primary != "" })
	c := tc.client(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Put(ctx, []byte("k"), []byte("B")); err != nil {
		t.Fatal(err)
	}
	var retry *wire.Response
	eventually(t, 30*time.Second, func() error {
		if retry = rawCall(t, tc.procOf(ng.Primary).addr, first)[0]; retry.Code != wire.Code_OK {
			return fmt.Errorf("retry on %s: %v %s", ng.Primary, retry.Code, retry.Message)
		}
		return nil
	})
	v, err := c.Get(ctx, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	if string(v) != "B" {
		t.Fatalf("k = %q after the retry, want the later put's B: the retry took effect again", v)
	}
	if n := retriesAnswered(t, tc); n < 1 {
		t.Fatalf("the nodes say they answered %d retried writes from their first attempt, want at least 1", n)
	}
}

// dataClient dials the data node at addr for a test's own calls; the
// connection closes when the test ends.
func dataClient(t *testing.T, addr string) wire.DRPCDataClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := wire.Dial(ctx, addr, wire.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return wire.NewDRPCDataClient(conn)
}

// rawCall sends reqs as one batch on a new stream to addr, as a client
// would, and returns the answers in request order.
func rawCall(t *testing.T, addr string, reqs ...*wire.Request) []*wire.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	stream, err := dataClient(t, addr).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range reqs {
		r.Id = uint64(i + 1)
	}
	if err := stream.Send(&wire.Batch{Requests: reqs}); err != nil {
		t.Fatal(err)
	}
	out := make([]*wire.Response, len(reqs))
	for left := len(reqs); left > 0; {
		reply, err := stream.Recv()
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		for _, r := range reply.Responses {
			if r.Id >= 1 && r.Id <= uint64(len(out)) && out[r.Id-1] == nil {
				out[r.Id-1] = r
				left--
			}
		}
	}
	return out
}
