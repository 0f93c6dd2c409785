package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
)

// startGroup runs one coordinator and a group g1 of n nodes, and waits
// until every node is in sync.
func startGroup(t *testing.T, n int) (*testCluster, *coord.Cluster) {
	tc := newTestCluster(t)
	tc.coordinator("coord-1")
	for i := 1; i <= n; i++ {
		tc.replica(fmt.Sprintf("data-%d", i))
	}
	cl := tc.coordCluster()
	tc.waitServing(cl, 30*time.Second)
	tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return len(g.ISR) == n })
	return tc, cl
}

func (tc *testCluster) replica(name string) *proc {
	return tc.dataNode(name, "g1", "--max-lag", "1s")
}

// procOf returns the process of node id (its data dir holds the id).
func (tc *testCluster) procOf(id string) *proc {
	tc.t.Helper()
	for _, p := range tc.procsNamed("data-") {
		if nodeIDOf(tc.t, p) == id {
			return p
		}
	}
	tc.t.Fatalf("no process for node %s", id)
	return nil
}

// writer puts distinct keys from several goroutines and remembers which
// were acknowledged and when writes succeeded.
type writer struct {
	c     *client.Client
	mu    sync.Mutex
	acked [][]byte
	times []time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startWriter(c *client.Client, workers int) *writer {
	w := &writer{c: c, stop: make(chan struct{})}
	for i := 0; i < workers; i++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for j := 0; ; j++ {
				select {
				case <-w.stop:
					return
				default:
				}
				k := []byte(fmt.Sprintf("w%02d-%07d", i, j))
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := c.Put(ctx, k, k)
				cancel()
				if err == nil {
					w.mu.Lock()
					w.acked = append(w.acked, k)
					w.times = append(w.times, time.Now())
					w.mu.Unlock()
				}
			}
		}()
	}
	return w
}

func (w *writer) halt() { close(w.stop); w.wg.Wait() }

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// waitProgress waits until n more writes were acknowledged.
func (w *writer) waitProgress(t *testing.T, n int, within time.Duration) {
	t.Helper()
	start := w.count()
	eventually(t, within, func() error {
		if got := w.count() - start; got < n {
			return fmt.Errorf("writes did not resume (%d of %d acknowledged)", got, n)
		}
		return nil
	})
}

// longestGap is the longest time without an acknowledged write from since
// on (since counts as the last write before it).
func (w *writer) longestGap(since time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	times := slices.Clone(w.times)
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	var gap time.Duration
	prev := since
	for _, at := range times {
		if at.Before(since) {
			continue
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return gap
}

// verify reads back every acknowledged write.
func (w *writer) verify(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, k := range w.acked {
		v, err := c.Get(ctx, k)
		if err != nil || !bytes.Equal(v, k) {
			t.Fatalf("acknowledged write %s lost: %q, %v", k, v, err)
		}
	}
	t.Logf("all %d acknowledged writes are readable", len(w.acked))
}

func TestPrimaryKilledLosesNoAcknowledgedWrite(t *testing.T) {
	tc, cl := startGroup(t, 3)
	c := tc.client(cl)
	w := startWriter(c, 16)
	w.waitProgress(t, 500, 10*time.Second)

	g := tc.waitGroup(cl, "g1", time.Second, func(*coord.Group) bool { return true })
	killedAt := time.Now()
	tc.procOf(g.Primary).Kill()
	ng := tc.waitGroup(cl, "g1", sessionTimeout+10*time.Second, func(ng *coord.Group) bool { return ng.Primary != g.Primary && ng.Primary != "" })
	w.waitProgress(t, 500, sessionTimeout+10*time.Second)
	w.halt()
	t.Logf("failover: %s → %s (epoch %d → %d); longest gap without an acknowledged write: %s (session timeout %s)",
		g.Primary, ng.Primary, g.Epoch, ng.Epoch, w.longestGap(killedAt).Round(time.Millisecond), sessionTimeout)
	w.verify(t, c)
}

func TestSecondaryKilledAndRestarted(t *testing.T) {
	tc, cl := startGroup(t, 3)
	c := tc.client(cl)
	w := startWriter(c, 16)
	w.waitProgress(t, 500, 10*time.Second)
	g := tc.waitGroup(cl, "g1", time.Second, func(*coord.Group) bool { return true })
	victimID := g.ISR[slices.IndexFunc(g.ISR, func(id string) bool { return id != g.Primary })]
	victim := tc.procOf(victimID)
	victim.Kill()
	// The primary drops it from the ISR and writes go on.
	tc.waitGroup(cl, "g1", 10*time.Second, func(g *coord.Group) bool { return !slices.Contains(g.ISR, victimID) })
	w.waitProgress(t, 500, 10*time.Second)
	tc.restart(victim)
	// It catches up and is back in sync while writes continue.
	tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return slices.Contains(g.ISR, victimID) })
	w.waitProgress(t, 200, 10*time.Second)
	w.halt()
	w.verify(t, c)
}

func TestTwoFailoversInARow(t *testing.T) {
	tc, cl := startGroup(t, 3)
	c := tc.client(cl)
	w := startWriter(c, 16)
	w.waitProgress(t, 300, 10*time.Second)
	for round := 1; round <= 2; round++ {
		g := tc.waitGroup(cl, "g1", 10*time.Second, func(g *coord.Group) bool { return len(g.ISR) >= 4-round })
		tc.procOf(g.Primary).Kill()
		ng := tc.waitGroup(cl, "g1", sessionTimeout+10*time.Second, func(ng *coord.Group) bool { return ng.Primary != g.Primary && ng.Primary != "" })
		t.Logf("round %d: %s → %s, epoch %d", round, g.Primary, ng.Primary, ng.Epoch)
		w.waitProgress(t, 300, sessionTimeout+10*time.Second)
	}
	w.halt()
	w.verify(t, c)
}

func TestOldPrimaryRejoinsAndCatchesUp(t *testing.T) {
	tc, cl := startGroup(t, 3)
	c := tc.client(cl)
	w := startWriter(c, 16)
	w.waitProgress(t, 500, 10*time.Second)
	g := tc.waitGroup(cl, "g1", time.Second, func(*coord.Group) bool { return true })
	old := tc.procOf(g.Primary)
	old.Kill()
	tc.waitGroup(cl, "g1", sessionTimeout+10*time.Second, func(ng *coord.Group) bool { return ng.Primary != g.Primary && ng.Primary != "" })
	w.waitProgress(t, 1000, sessionTimeout+10*time.Second)
	tc.restart(old)
	tc.waitGroup(cl, "g1", 30*time.Second, func(ng *coord.Group) bool { return slices.Contains(ng.ISR, g.Primary) })
	if b, err := os.ReadFile(old.Log); err == nil {
		t.Logf("the old primary truncated entries: %v; restored a snapshot: %v",
			bytes.Contains(b, []byte("truncating entries the new primary does not have")), bytes.Contains(b, []byte("snapshot restored")))
	}
	w.waitProgress(t, 300, 10*time.Second)
	w.halt()
	// Hand the role back to the old primary: it must hold every
	// acknowledged write.
	out, stderr, code := tc.cli(nil, "admin", "failover", "--group", "g1", "--to", g.Primary)
	if code != 0 {
		t.Fatalf("admin failover: exit %d: %s", code, stderr)
	}
	t.Log(out)
	w.verify(t, c)
}

func TestGracefulSwitchover(t *testing.T) {
	tc, cl := startGroup(t, 3)
	c := tc.client(cl)
	w := startWriter(c, 16)
	w.waitProgress(t, 500, 10*time.Second)
	g := tc.waitGroup(cl, "g1", time.Second, func(*coord.Group) bool { return true })
	start := time.Now()
	out, stderr, code := tc.cli(nil, "admin", "failover", "--group", "g1")
	if code != 0 {
		t.Fatalf("admin failover: exit %d: %s", code, stderr)
	}
	t.Logf("%s", out)
	ng := tc.waitGroup(cl, "g1", 5*time.Second, func(ng *coord.Group) bool { return ng.Primary != g.Primary })
	w.waitProgress(t, 500, 5*time.Second)
	w.halt()
	gap := w.longestGap(start)
	t.Logf("switchover %s → %s: longest gap without an acknowledged write %s", g.Primary, ng.Primary, gap.Round(time.Millisecond))
	if gap > time.Second {
		t.Errorf("switchover paused writes for %s, want under a second", gap)
	}
	w.verify(t, c)
}

func TestNewSecondaryCatchesUpBySnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 200,000 keys")
	}
	tc, cl := startGroup(t, 2)
	c := tc.client(cl)
	const keys = 200_000
	value := bytes.Repeat([]byte("v"), 100)
	parallel(t, 64, keys, func(i int) error {
		return c.Put(context.Background(), []byte(fmt.Sprintf("snap-%07d", i)), value)
	})
	w := startWriter(c, 8)
	start := time.Now()
	newcomer := tc.replica("data-3")
	id := nodeIDOf(t, newcomer)
	tc.waitGroup(cl, "g1", 2*time.Minute, func(g *coord.Group) bool { return slices.Contains(g.ISR, id) })
	took := time.Since(start)
	w.waitProgress(t, 100, 10*time.Second)
	w.halt()
	t.Logf("new secondary caught up with %d keys (~%.0f MB of keys and values) in %s: %.0f keys/s, %.1f MB/s, while %d writes went on",
		keys, float64(keys*(12+100))/1e6, took.Round(time.Millisecond), keys/took.Seconds(), float64(keys*(12+100))/1e6/took.Seconds(), w.count())
	// Make the newcomer primary: it must serve everything.
	if _, stderr, code := tc.cli(nil, "admin", "failover", "--group", "g1", "--to", id); code != 0 {
		t.Fatalf("failover to the newcomer: exit %d: %s", code, stderr)
	}
	for i := 0; i < keys; i += 997 {
		k := []byte(fmt.Sprintf("snap-%07d", i))
		if v, err := c.Get(context.Background(), k); err != nil || !bytes.Equal(v, value) {
			t.Fatalf("get %s from the new primary: %v", k, err)
		}
	}
	w.verify(t, c)
}

func TestSigtermOnPrimaryHandsOver(t *testing.T) {
	tc, cl := startGroup(t, 3)
	c := tc.client(cl)
	w := startWriter(c, 16)
	w.waitProgress(t, 500, 10*time.Second)
	g := tc.waitGroup(cl, "g1", time.Second, func(*coord.Group) bool { return true })
	p := tc.procOf(g.Primary)
	start := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ng := tc.waitGroup(cl, "g1", 5*time.Second, func(ng *coord.Group) bool { return ng.Primary != g.Primary && ng.Primary != "" })
	// The handover happens before the process deregisters: well inside the
	// session timeout a failover would need.
	took := time.Since(start)
	w.waitProgress(t, 500, 5*time.Second)
	w.halt()
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("primary did not exit after SIGTERM")
	}
	t.Logf("SIGTERM on %s: %s took over after %s; longest gap without an acknowledged write %s", g.Primary, ng.Primary,
		took.Round(time.Millisecond), w.longestGap(start).Round(time.Millisecond))
	if took >= sessionTimeout {
		t.Errorf("takeover after SIGTERM took %s: that is a failover, not a handover", took)
	}
	w.verify(t, c)
}

func TestReadsFromSecondaries(t *testing.T) {
	tc, cl := startGroup(t, 3)
	c := tc.client(cl)
	ctx := context.Background()
	if err := c.Put(ctx, []byte("stale-ok"), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	// Secondaries make the write visible once the primary's watermark
	// reaches them (a heartbeat at most).
	eventually(t, 5*time.Second, func() error {
		if out, stderr, code := tc.cli(nil, "--read-from", "secondary", "get", "stale-ok"); code != 0 || out != "v1\n" {
			return fmt.Errorf("read from a secondary: exit %d %q %s", code, out, stderr)
		}
		return nil
	})
	if _, stderr, code := tc.cli(nil, "--read-from", "bogus", "get", "stale-ok"); code != exitUsage {
		t.Fatalf("--read-from bogus: exit %d %s", code, stderr)
	}
}

func TestMinInsyncRefusesWrites(t *testing.T) {
	tc := newTestCluster(t)
	tc.coordinator("coord-1")
	tc.dataNode("data-1", "g1", "--max-lag", "500ms", "--min-insync", "2")
	tc.dataNode("data-2", "g1", "--max-lag", "500ms", "--min-insync", "2")
	cl := tc.coordCluster()
	tc.waitServing(cl, 30*time.Second)
	g := tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 2 })
	c := tc.client(cl)
	ctx := context.Background()
	if err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	secondary := g.ISR[slices.IndexFunc(g.ISR, func(id string) bool { return id != g.Primary })]
	tc.procOf(secondary).Kill()
	tc.waitGroup(cl, "g1", 10*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 1 })
	// The client retries the refusal until its timeout, then reports it;
	// the timeout leaves a loaded machine time to connect first.
	_, stderr, code := tc.cli(nil, "--timeout", "4s", "put", "k2", "v")
	if code != exitFailed || !strings.Contains(stderr, "min-insync") {
		t.Fatalf("put with too few in-sync replicas: exit %d, %s", code, stderr)
	}
	if out, _, code := tc.cli(nil, "get", "k"); code != 0 || out != "v\n" {
		t.Fatalf("reads must go on: exit %d %q", code, out)
	}
}

func TestForcedFailoverWithNoInSyncMemberAlive(t *testing.T) {
	tc, cl := startGroup(t, 2)
	c := tc.client(cl)
	ctx := context.Background()
	g := tc.waitGroup(cl, "g1", time.Second, func(*coord.Group) bool { return true })
	secondaryID := g.ISR[slices.IndexFunc(g.ISR, func(id string) bool { return id != g.Primary })]
	secondary := tc.procOf(secondaryID)
	secondary.Kill()
	tc.waitGroup(cl, "g1", 10*time.Second, func(g *coord.Group) bool { return !slices.Contains(g.ISR, secondaryID) })
	for i := 0; i < 50; i++ {
		if err := c.Put(ctx, []byte(fmt.Sprintf("only-on-primary-%d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	tc.procOf(g.Primary).Kill()
	tc.restart(secondary)
	// The only live member is out of sync: the group waits for an operator.
	time.Sleep(sessionTimeout + time.Second)
	if cur := tc.waitGroup(cl, "g1", time.Second, func(*coord.Group) bool { return true }); cur.Primary != g.Primary {
		t.Fatalf("an out-of-sync member was promoted without --force: %+v", cur)
	}
	out, stderr, code := tc.cli(nil, "admin", "failover", "--group", "g1", "--to", secondaryID, "--force")
	if code != 0 || !strings.Contains(out, "forced") {
		t.Fatalf("forced failover: exit %d\n%s%s", code, out, stderr)
	}
	t.Logf("%s", out)
	if err := c.Put(ctx, []byte("after-force"), []byte("v")); err != nil {
		t.Fatalf("write after a forced failover: %v", err)
	}
	if _, stderr, code := tc.cli(nil, "admin", "failover", "--group", "g1", "--to", "nobody"); code != exitUsage {
		t.Fatalf("failover to a non-member: exit %d %s", code, stderr)
	}
}
