package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// The slot migration acceptance test (docs/migration.md): real processes
// and ZooKeeper, 2 groups of 3 holding ~100,000 keys, a third group joins
// and `admin rebalance` moves slots to it while writers and readers run;
// the coordinator leader is killed half way. Then a group is drained,
// stopped and removed.

const (
	migKeys    = 100000 // k-00000 … k-99999
	migDeleted = 1000   // k-00000 to k-00999 are deleted before the rebalance
)

func TestMigrationRebalanceAndDrain(t *testing.T) {
	tc := newTestCluster(t)
	coords := []*proc{tc.coordinator("coord-1"), tc.coordinator("coord-2")}
	for _, g := range []string{"g1", "g2"} {
		for _, m := range []string{"a", "b", "c"} {
			tc.dataNode("data-"+g+m, g)
		}
	}
	cl := tc.coordCluster()
	tc.waitServing(cl, 60*time.Second)
	for _, g := range []string{"g1", "g2"} {
		tc.waitGroup(cl, g, 60*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 3 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := tc.client(cl)

	putMigrationKeys(t, ctx, c, migKeys)

	// The third group joins; what the rebalance will move is known now.
	for _, m := range []string{"a", "b", "c"} {
		tc.dataNode("data-g3"+m, "g3")
	}
	tc.waitGroup(cl, "g3", 60*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 3 })
	table, _, err := cl.SlotTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := cl.Groups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	moving := map[int]bool{}
	for _, mv := range coord.PlanMoves(table, groups) {
		for s := mv.First; s <= mv.Last; s++ {
			moving[s] = true
		}
	}
	if len(moving) == 0 {
		t.Fatal("the plan moves nothing")
	}

	// Readers and writers: porcupine's workers, and writers that each own
	// keys (hash-tagged ones on moving slots among them) and remember the
	// latest acknowledged value of each.
	ops := startOpLog(t, c, 4, 200)
	w := startMigrationWriters(t, c, 4, taggedKeys(len(table.Owners), moving, 40))

	out := make(chan string, 1)
	go func() {
		stdout, stderr, code := runCLIWithin(t, 4*time.Minute, nil, "--zk", tc.zk.Addr(), "--cluster", tc.name,
			"--timeout", "20s", "admin", "rebalance", "--rate", "100")
		out <- fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}()
	// Kill the leader once a migration is in flight.
	waitMigrating(t, ctx, cl)
	leader := leaderProc(t, cl, coords)
	leader.Kill()
	t.Logf("killed the coordinator leader %s mid-rebalance", leader.Name)
	var result string
	select {
	case result = <-out:
	case <-ctx.Done():
		t.Fatal("admin rebalance did not finish")
	}
	t.Logf("admin rebalance: %s", result)
	if !strings.HasPrefix(result, "exit 0\n") {
		t.Fatalf("admin rebalance failed: %s", result)
	}
	w.halt()
	ops.halt()

	// Each group within one slot of its share.
	table, _, err = cl.SlotTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(table.Migrations) != 0 {
		t.Fatalf("migrations left after the rebalance: %+v", table.Migrations)
	}
	share := float64(len(table.Owners)) / 3
	for _, g := range []string{"g1", "g2", "g3"} {
		if n := float64(len(table.SlotsOf(g))); n < share-1 || n > share+1 {
			t.Errorf("group %s owns %v slots, share %.1f", g, n, share)
		}
	}
	movedTags := 0
	for k := range w.latest {
		if strings.HasPrefix(k, "{") && table.Owner(coord.SlotOf([]byte(k), len(table.Owners))) == "g3" {
			movedTags++
		}
	}
	if movedTags == 0 {
		t.Error("no hash-tagged key moved to g3")
	}

	if len(w.failed) > 0 {
		t.Errorf("%d writer calls failed, first: %s", len(w.failed), w.failed[0])
	}
	if len(ops.failed) > 0 {
		t.Errorf("%d reader/writer calls failed, first: %s", len(ops.failed), ops.failed[0])
	}
	live := checkMigratedData(t, ctx, tc, c, cl, w, migKeys)
	ops.check(t)

	// Drain g1 — Ctrl-C on the command half way leaves the drain running,
	// and admin rebalance follows it to the end —, stop g1's nodes, remove
	// it: everything is still there.
	drain := exec.Command(thunderctlBin, "--zk", tc.zk.Addr(), "--cluster", tc.name, "admin", "drain", "--group", "g1")
	var drainOut, drainErr bytes.Buffer
	drain.Stdout, drain.Stderr = &drainOut, &drainErr
	if err := drain.Start(); err != nil {
		t.Fatal(err)
	}
	waitMigrating(t, ctx, cl)
	if err := drain.Process.Signal(os.Interrupt); err == nil {
		if err := drain.Wait(); err != nil || !strings.Contains(drainErr.String(), "stopped following; rebalance ") {
			t.Fatalf("admin drain after Ctrl-C: %v\n%s\n%s", err, drainOut.String(), drainErr.String())
		}
		t.Logf("Ctrl-C stopped following the drain: %s", drainErr.String())
	} else {
		t.Logf("the drain was done before Ctrl-C: %v", drain.Wait())
	}
	if stdout, stderr, code := runCLIWithin(t, 4*time.Minute, nil, "--zk", tc.zk.Addr(), "--cluster", tc.name,
		"--timeout", "20s", "admin", "rebalance"); code != 0 {
		t.Fatalf("admin rebalance after the drain: exit %d\n%s\n%s", code, stdout, stderr)
	}
	table, _, err = cl.SlotTable(ctx)
	if err != nil || len(table.SlotsOf("g1")) != 0 {
		t.Fatalf("g1 still owns %d slots after the drain (%v)", len(table.SlotsOf("g1")), err)
	}
	if _, stderr, code := tc.cli(nil, "admin", "group", "remove", "g1"); code != exitFailed || !strings.Contains(stderr, "is running") {
		t.Fatalf("remove a running group: exit %d, %s", code, stderr)
	}
	for _, m := range []string{"a", "b", "c"} {
		tc.procs["data-g1"+m].Kill()
	}
	eventually(t, 30*time.Second, func() error {
		_, stderr, code := tc.cli(nil, "admin", "group", "remove", "g1")
		if code != 0 {
			return errors.New(stderr)
		}
		return nil
	})
	if _, _, err := cl.Group(ctx, "g1"); !errors.Is(err, coord.ErrNoNode) {
		t.Fatalf("g1 after its removal: %v", err)
	}
	if again := checkMigratedData(t, ctx, tc, c, cl, w, migKeys); again != live {
		t.Errorf("%d keys after the drain, %d before", again, live)
	}
	out2, _, code := tc.cli(nil, "admin", "slots")
	if code != 0 || !strings.Contains(out2, "last finished: ") {
		t.Errorf("admin slots: exit %d\n%s", code, out2)
	}
}

// putMigrationKeys stores k-00000 and on, n keys (v-00000 …), and deletes
// the first migDeleted again: what checkMigratedData(…, n) expects.
func putMigrationKeys(t *testing.T, ctx context.Context, c *client.Client, n int) {
	t.Helper()
	parallel(t, 64, n, func(i int) error {
		return c.Put(ctx, []byte(fmt.Sprintf("k-%05d", i)), []byte(fmt.Sprintf("v-%05d", i)))
	})
	parallel(t, 64, migDeleted, func(i int) error { return c.Delete(ctx, []byte(fmt.Sprintf("k-%05d", i))) })
}

// waitMigrating waits until a migration is in flight.
func waitMigrating(t *testing.T, ctx context.Context, cl *coord.Cluster) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		t, _, err := cl.SlotTable(ctx)
		if err == nil && len(t.Migrations) == 0 {
			err = errors.New("no migration in flight yet")
		}
		return err
	})
}

// leaderProc is the coordinator process that leads now.
func leaderProc(t *testing.T, cl *coord.Cluster, coords []*proc) *proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	infos, err := cl.Coordinators(ctx)
	if err != nil || len(infos) == 0 {
		t.Fatalf("coordinators: %v, %v", infos, err)
	}
	for _, p := range coords {
		if p.addr == infos[0].Addr {
			return p
		}
	}
	t.Fatalf("no process at the leader's address %s", infos[0].Addr)
	return nil
}

// taggedKeys are per keys sharing a hash tag, for tags spread over the
// moving slots first, then over the others.
func taggedKeys(slots int, moving map[int]bool, tags int) []string {
	var onMoving, others []string
	for i := 0; len(onMoving) < tags/2 || len(others) < tags/2; i++ {
		tag := fmt.Sprintf("t%d", i)
		if moving[coord.SlotOf([]byte(tag), slots)] {
			onMoving = append(onMoving, tag)
		} else {
			others = append(others, tag)
		}
	}
	var keys []string
	for _, tag := range append(onMoving[:tags/2], others[:tags/2]...) {
		for _, s := range []string{"a", "b", "c"} {
			keys = append(keys, "{"+tag+"}."+s)
		}
	}
	return keys
}

// migrationWriters put and delete keys, each key owned by one writer, and
// remember the latest acknowledged state of each ("" deleted).
type migrationWriters struct {
	mu     sync.Mutex
	latest map[string]string
	failed []string
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

// startMigrationWriters runs writers over the tagged keys and over
// k-01000 to k-01999, until halt.
func startMigrationWriters(t *testing.T, c *client.Client, writers int, tagged []string) *migrationWriters {
	keys := slices.Clone(tagged)
	for i := migDeleted; i < 2*migDeleted; i++ {
		keys = append(keys, fmt.Sprintf("k-%05d", i))
	}
	w := &migrationWriters{latest: map[string]string{}, stop: make(chan struct{})}
	for i := migDeleted; i < 2*migDeleted; i++ {
		w.latest[fmt.Sprintf("k-%05d", i)] = fmt.Sprintf("v-%05d", i)
	}
	for id := range writers {
		var mine []string
		for i, k := range keys {
			if i%writers == id {
				mine = append(mine, k)
			}
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			rng := rand.New(rand.NewSource(int64(id)))
			for n := 0; ; n++ {
				select {
				case <-w.stop:
					return
				default:
				}
				k := mine[rng.Intn(len(mine))]
				var err error
				v := fmt.Sprintf("w%d-%d", id, n)
				if rng.Intn(10) == 0 {
					v = ""
					err = c.Delete(context.Background(), []byte(k))
				} else {
					err = c.Put(context.Background(), []byte(k), []byte(v))
				}
				w.mu.Lock()
				if err != nil {
					w.failed = append(w.failed, fmt.Sprintf("write %s: %v", k, err))
					v = "?"
				}
				w.latest[k] = v
				w.mu.Unlock()
			}
		}()
	}
	t.Cleanup(w.halt)
	return w
}

func (w *migrationWriters) halt() { w.once.Do(func() { close(w.stop); w.wg.Wait() }) }

// checkMigratedData checks every acknowledged write reads back latest,
// deleted keys stay deleted, a scan returns each key once and the primaries'
// key counts add up to what the scan found; it returns that count. n is
// what putMigrationKeys stored.
func checkMigratedData(t *testing.T, ctx context.Context, tc *testCluster, c *client.Client, cl *coord.Cluster, w *migrationWriters, n int) int {
	t.Helper()
	want := map[string]string{}
	for i := migDeleted; i < n; i++ {
		want[fmt.Sprintf("k-%05d", i)] = fmt.Sprintf("v-%05d", i)
	}
	for k, v := range w.latest {
		want[k] = v
	}
	for k, v := range want {
		got, err := c.Get(ctx, []byte(k))
		switch {
		case v == "?":
		case v == "" && !errors.Is(err, client.ErrNotFound):
			t.Fatalf("deleted key %s reads %q, %v", k, got, err)
		case v != "" && (err != nil || string(got) != v):
			t.Fatalf("key %s reads %q, %v; want %q", k, got, err, v)
		}
	}
	for i := range migDeleted {
		if _, err := c.Get(ctx, []byte(fmt.Sprintf("k-%05d", i))); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("deleted key k-%05d: %v", i, err)
		}
	}
	var prev string
	total, ours := 0, 0
	err := c.Scan(ctx, client.ScanOptions{}, func(key, value []byte) error {
		if k := string(key); k <= prev && total > 0 {
			return fmt.Errorf("scan returned %q after %q", k, prev)
		}
		prev = string(key)
		total++
		if v, ok := want[prev]; ok && v != "" {
			ours++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, v := range want {
		if v != "" && v != "?" {
			live++
		}
	}
	if ours < live {
		t.Fatalf("scan found %d of the %d live keys", ours, live)
	}
	eventually(t, 60*time.Second, func() error {
		n, err := ownersKeyCount(ctx, cl)
		if err == nil && n != uint64(total) {
			err = fmt.Errorf("the primaries count %d keys, the scan found %d", n, total)
		}
		return err
	})
	return total
}

// ownersKeyCount adds up the key counts the groups' primaries report.
func ownersKeyCount(ctx context.Context, cl *coord.Cluster) (uint64, error) {
	rt, err := cl.Routes(ctx)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, g := range rt.Groups {
		if g.PrimaryAddr == "" || len(rt.Table.SlotsOf(g.Name)) == 0 {
			continue
		}
		st, err := nodeclient.Nodes{}.NodeStatus(ctx, g.PrimaryAddr)
		if err != nil {
			return 0, err
		}
		n += st.Keys
	}
	return n, nil
}

// TestMigrationUsage: the migration commands refuse bad input with exit 2
// before connecting anywhere.
func TestMigrationUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"admin", "rebalance", "--rate", "-1"}, "--rate -1: want 0 to 1000000"},
		{[]string{"admin", "rebalance", "--cancel", "--dry-run"}, "--cancel takes neither"},
		{[]string{"admin", "rebalance", "extra"}, "admin rebalance takes no arguments"},
		{[]string{"admin", "drain"}, "--group is required"},
		{[]string{"admin", "drain", "--group", "a/b"}, `--group "a/b"`},
		{[]string{"admin", "group", "weight", "g1"}, "two arguments: GROUP WEIGHT"},
		{[]string{"admin", "group", "weight", "g1", "-2"}, `weight "-2": want 0 to 1000000`},
		{[]string{"admin", "group", "weight", "a/b", "1"}, `group name "a/b"`},
		{[]string{"admin", "group", "remove"}, "one argument: GROUP"},
		{[]string{"admin", "group"}, "a command is required: weight, remove"},
	} {
		r := runThunderctl(t, []string{"THUNDER_TIMEOUT=30s", "THUNDER_ZK=" + deadAddr(t)}, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want 2 and %q", tc.args, r.code, r.stderr, r.stdout, tc.want)
		}
	}
	r := runThunderctl(t, nil, "help", "admin", "rebalance")
	if r.code != exitOK || !strings.Contains(r.stdout, "thunderctl admin rebalance --dry-run") {
		t.Errorf("help admin rebalance: exit %d\n%s", r.code, r.stdout)
	}
}
