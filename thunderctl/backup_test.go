package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/internal/s3test"
)

// backupRow and backupResult are the JSON of `admin backup list` and `run`.
type backupRow struct {
	ID     string `json:"id"`
	Keys   int64  `json:"keys"`
	Status string `json:"status"`
}

type backupResult struct {
	ID     string                     `json:"id"`
	Slots  int                        `json:"slots"`
	Keys   int64                      `json:"keys"`
	Groups map[string]json.RawMessage `json:"groups"`
}

// backupKeys writes 20,000 keys that never change: binary keys, hash tags
// and plain ones, values of 1 B to 1 KiB, a few of 1 MiB and three of
// 4 MiB.
func backupKeys(t *testing.T, c *client.Client) map[string][]byte {
	t.Helper()
	const n = 20000
	keys := make([]string, n)
	values := make([][]byte, n)
	for i := range n {
		switch i % 3 {
		case 0:
			keys[i] = fmt.Sprintf("\x00\xff%d\n", i)
		case 1:
			keys[i] = fmt.Sprintf("{user%d}.field%d", i%50, i)
		default:
			keys[i] = fmt.Sprintf("key-%05d", i)
		}
		size := []int{1, 10, 100, 1000}[i%4]
		switch {
		case i >= 11 && i <= 13:
			size = 4 << 20
		case i%4000 == 7:
			size = 1 << 20
		}
		values[i] = bytes.Repeat([]byte{byte('a' + i%26)}, size)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	parallel(t, 64, n, func(i int) error { return c.Put(ctx, []byte(keys[i]), values[i]) })
	want := make(map[string][]byte, n)
	for i := range n {
		want[keys[i]] = values[i]
	}
	return want
}

// hotWriter keeps rewriting 500 keys with ever newer versions (the first 8
// bytes of the value) and remembers the newest acknowledged version of each.
type hotWriter struct {
	mu    sync.Mutex
	acked map[string]uint64
	stop  context.CancelFunc
	done  sync.WaitGroup
	err   atomic.Value
}

func startHotWriter(c *client.Client) *hotWriter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &hotWriter{acked: map[string]uint64{}, stop: cancel}
	var next atomic.Uint64
	for range 4 {
		w.done.Add(1)
		go func() {
			defer w.done.Done()
			for ctx.Err() == nil {
				v := next.Add(1)
				key := fmt.Sprintf("hot-%03d", v%500)
				value := binary.BigEndian.AppendUint64(nil, v)
				value = append(value, bytes.Repeat([]byte("h"), int(v%300))...)
				if err := c.Put(ctx, []byte(key), value); err != nil {
					if ctx.Err() == nil {
						w.err.Store(err)
					}
					return
				}
				w.mu.Lock()
				w.acked[key] = max(w.acked[key], v)
				w.mu.Unlock()
			}
		}()
	}
	return w
}

// snapshot is every hot key's newest acknowledged version now.
func (w *hotWriter) snapshot() map[string]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]uint64, len(w.acked))
	for k, v := range w.acked {
		out[k] = v
	}
	return out
}

func (w *hotWriter) finish(t *testing.T) {
	w.stop()
	w.done.Wait()
	if err, _ := w.err.Load().(error); err != nil {
		t.Fatalf("writer: %v", err)
	}
}

// checkRestored reads every key of cl and checks it holds every static key
// exactly and every hot key at least at the version acknowledged before
// the backup started, and nothing else.
func checkRestored(t *testing.T, c *client.Client, static map[string][]byte, hot map[string]uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got := 0
	err := c.Scan(ctx, client.ScanOptions{}, func(k, v []byte) error {
		got++
		if want, ok := static[string(k)]; ok {
			if !bytes.Equal(v, want) {
				return fmt.Errorf("key %q: %d bytes, want %d", k, len(v), len(want))
			}
			return nil
		}
		if !strings.HasPrefix(string(k), "hot-") || len(v) < 8 {
			return fmt.Errorf("key %q was never written", k)
		}
		if ver := binary.BigEndian.Uint64(v); ver < hot[string(k)] {
			return fmt.Errorf("key %q at version %d, older than %d acknowledged before the backup", k, ver, hot[string(k)])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k := range hot {
		if _, err := c.Get(ctx, []byte(k)); err != nil {
			t.Fatalf("hot key %s: %v", k, err)
		}
	}
	if want := len(static) + len(hot); got < want {
		t.Fatalf("restored cluster holds %d keys, want at least %d", got, want)
	}
}

// cliJSON runs a command with -o json and decodes its output.
func (tc *testCluster) cliJSON(v any, args ...string) {
	tc.t.Helper()
	out, stderr, code := tc.cli(nil, append(args, "-o", "json")...)
	if code != 0 {
		tc.t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		tc.t.Fatalf("%v: %v in %q", args, err, out)
	}
}

// copyTree copies directory src to a new directory and returns it.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// A backup taken while a writer keeps writing, to a directory and to S3,
// restores into clusters of one and of three groups and another slot
// count with every key written before it started, at least as new. A
// damaged backup fails verify and restore, naming the file, and nothing is
// written. A backup killed midway never lists as complete, and the next
// run succeeds.
func TestBackupRestore(t *testing.T) {
	tc := newTestCluster(t)
	tc.coordinator("coord-1")
	for _, g := range []string{"g1", "g2"} {
		tc.dataNode("data-"+g+"a", g)
		tc.dataNode("data-"+g+"b", g)
	}
	cl := tc.coordCluster()
	tc.waitServing(cl, 30*time.Second)
	for _, g := range []string{"g1", "g2"} {
		tc.waitGroup(cl, g, 30*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 2 })
	}
	src := tc.client(cl)
	static := backupKeys(t, src)
	w := startHotWriter(src)
	eventually(t, 10*time.Second, func() error {
		if len(w.snapshot()) < 500 {
			return fmt.Errorf("writer has touched %d hot keys", len(w.snapshot()))
		}
		return nil
	})

	dir := t.TempDir()
	hotDir := w.snapshot()
	var res backupResult
	tc.cliJSON(&res, "admin", "backup", "run", "--to", dir)
	if res.Slots != 64 || res.Keys < int64(len(static)+500) || len(res.Groups) != 2 {
		t.Fatalf("backup run: %+v", res)
	}
	srv := s3test.Start(t, "backups")
	s3dest := "s3://backups/e2e"
	hotS3 := w.snapshot()
	var res3 backupResult
	tc.cliJSON(&res3, "admin", "backup", "run", "--to", s3dest, "--s3-endpoint", srv.Endpoint)
	w.finish(t)
	var rows []backupRow
	tc.cliJSON(&rows, "admin", "backup", "list", "--to", s3dest, "--s3-endpoint", srv.Endpoint)
	if len(rows) != 1 || rows[0].ID != res3.ID || rows[0].Status != "complete" || rows[0].Keys != res3.Keys {
		t.Fatalf("list of S3: %+v, want %s complete", rows, res3.ID)
	}

	// One group, the same slot count, from the directory; first the damaged
	// copies, which must write nothing.
	one := tc.another("one")
	one.coordinator("one-coord")
	one.dataNode("one-data", "g1")
	oneCl := one.coordCluster()
	one.waitServing(oneCl, 30*time.Second)
	damage := map[string]func(set string) string{
		"flipped byte": func(set string) string {
			f := filepath.Join(set, "slot-0005.tyb")
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return "slot-0005.tyb"
		},
		"deleted file": func(set string) string {
			if err := os.Remove(filepath.Join(set, "slot-0007.tyb")); err != nil {
				t.Fatal(err)
			}
			return "slot-0007.tyb"
		},
		"edited manifest": func(set string) string {
			f := filepath.Join(set, "manifest.json")
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			slot := m["slots"].([]any)[3].(map[string]any)
			slot["keys"] = slot["keys"].(float64) + 1
			if b, err = json.Marshal(m); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return "slot-0003.tyb"
		},
	}
	for name, spoil := range damage {
		bad := copyTree(t, dir)
		file := spoil(filepath.Join(bad, res.ID))
		_, stderr, code := one.cli(nil, "admin", "backup", "verify", filepath.Join(bad, res.ID))
		if code != 1 || !strings.Contains(stderr, file) {
			t.Errorf("%s: verify: exit %d, %q; want 1 naming %s", name, code, stderr, file)
		}
		_, stderr, code = one.cli(nil, "admin", "restore", "--from", filepath.Join(bad, res.ID))
		if code != 1 || !strings.Contains(stderr, file) {
			t.Errorf("%s: restore: exit %d, %q; want 1 naming %s", name, code, stderr, file)
		}
	}
	if out, stderr, code := one.cli(nil, "scan", "--limit", "1"); code != 0 || out != "" {
		t.Fatalf("after refused restores: scan: exit %d, %q, %s", code, out, stderr)
	}
	if _, stderr, code := one.cli(nil, "admin", "backup", "verify", filepath.Join(dir, res.ID)); code != 0 {
		t.Fatalf("verify: exit %d: %s", code, stderr)
	}
	var rres backupResult
	one.cliJSON(&rres, "admin", "restore", "--from", filepath.Join(dir, res.ID))
	checkRestored(t, one.client(oneCl), static, hotDir)
	if _, stderr, code := one.cli(nil, "admin", "restore", "--from", filepath.Join(dir, res.ID)); code != 1 || !strings.Contains(stderr, "not empty") {
		t.Errorf("restore into a non-empty cluster: exit %d, %s", code, stderr)
	}

	// Three groups and 32 slots, from S3.
	three := tc.another("three")
	three.start("three-coord", "serve", "coord", "--slots", "32", "--assign-delay", "1s", "--replication-factor", "1")
	for _, g := range []string{"g1", "g2", "g3"} {
		three.dataNode("three-"+g, g)
	}
	threeCl := three.coordCluster()
	three.waitServing(threeCl, 30*time.Second)
	three.cliJSON(&rres, "admin", "restore", "--from", s3dest+"/"+res3.ID, "--s3-endpoint", srv.Endpoint)
	checkRestored(t, three.client(threeCl), static, hotS3)

	// A run killed midway lists as incomplete; the next one completes.
	killed := t.TempDir()
	cmd := exec.Command(thunderctlBin, "--zk", tc.zk.Addr(), "--cluster", tc.name, "admin", "backup", "run", "--to", killed)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		files, _ := filepath.Glob(filepath.Join(killed, "*", "slot-*.tyb"))
		if len(files) == 0 {
			return fmt.Errorf("no slot file yet")
		}
		return nil
	})
	_ = cmd.Process.Kill()
	if err := cmd.Wait(); err == nil {
		t.Fatal("the backup finished before it could be killed")
	}
	tc.cliJSON(&rows, "admin", "backup", "list", "--to", killed)
	if len(rows) != 1 || rows[0].Status != "incomplete" {
		t.Fatalf("after a killed run: %+v, want one incomplete", rows)
	}
	tc.cliJSON(&res, "admin", "backup", "run", "--to", killed)
	tc.cliJSON(&rows, "admin", "backup", "list", "--to", killed)
	status := map[string]string{}
	for _, r := range rows {
		status[r.Status] = r.ID
	}
	if len(rows) != 2 || status["complete"] != res.ID || status["incomplete"] == "" {
		t.Fatalf("after a killed run and a good one: %+v", rows)
	}
}

// A seconds-level schedule runs on the leader and goes on after the leader
// is killed, each tick once; --keep 3 leaves exactly 3 complete backups. An
// unwritable destination makes runs fail visibly and deletes nothing.
func TestBackupSchedule(t *testing.T) {
	tc, cl := startCluster(t)
	c := tc.client(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range 100 {
		if err := c.Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if _, stderr, code := tc.cli(nil, "admin", "backup", "schedule", "set", "--cron", "not a spec", "--to", dir, "--keep", "3"); code != 2 {
		t.Fatalf("bad cron spec: exit %d: %s", code, stderr)
	}
	if _, stderr, code := tc.cli(nil, "admin", "backup", "schedule", "set", "--cron", "*/2 * * * * *", "--to", dir, "--keep", "3"); code != 0 {
		t.Fatalf("schedule set: exit %d: %s", code, stderr)
	}
	var show struct {
		Schedule coord.BackupSchedule `json:"schedule"`
		NextRun  *time.Time           `json:"next_run"`
	}
	tc.cliJSON(&show, "admin", "backup", "schedule", "show")
	if show.Schedule.Cron != "*/2 * * * * *" || show.Schedule.Keep != 3 || show.NextRun == nil {
		t.Fatalf("schedule show: %+v", show)
	}
	okRuns := func(by string) int {
		runs, err := cl.BackupRuns(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range runs {
			if r.OK() && (by == "" || r.Coordinator == by) {
				n++
			}
		}
		return n
	}
	leader := func() string {
		cs, err := cl.Coordinators(ctx)
		if err != nil || len(cs) == 0 {
			return ""
		}
		return cs[0].ID
	}
	first := leader()
	eventually(t, time.Minute, func() error {
		if n := okRuns(first); n < 2 {
			return fmt.Errorf("%d runs by %s", n, first)
		}
		return nil
	})
	for _, name := range []string{"coord-1", "coord-2"} {
		if p := tc.procs[name]; p.addr == first {
			p.Kill()
		}
	}
	var second string
	eventually(t, time.Minute, func() error {
		if second = leader(); second == "" || second == first || okRuns(second) < 2 {
			return fmt.Errorf("leader %q has not run twice", second)
		}
		return nil
	})
	if _, stderr, code := tc.cli(nil, "admin", "backup", "schedule", "clear"); code != 0 {
		t.Fatalf("schedule clear: exit %d: %s", code, stderr)
	}
	waitIdle(t, ctx, cl)
	ticks := map[string]int{}
	tickRE := regexp.MustCompile(`scheduled backup started tick=(\S+)`)
	for _, name := range []string{"coord-1", "coord-2"} {
		b, err := os.ReadFile(tc.procs[name].Log)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tickRE.FindAllStringSubmatch(string(b), -1) {
			ticks[m[1]]++
		}
	}
	for tick, n := range ticks {
		if n > 1 {
			t.Errorf("tick %s ran %d times", tick, n)
		}
	}
	complete := func() int {
		var rows []backupRow
		tc.cliJSON(&rows, "admin", "backup", "list", "--to", dir)
		n := 0
		for _, r := range rows {
			if r.Status == "complete" {
				n++
			}
		}
		return n
	}
	if n := complete(); n != 3 {
		t.Fatalf("%d complete backups with --keep 3", n)
	}

	// The destination turns read-only: runs fail, visibly, and delete nothing.
	if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	if out, err := exec.Command("mount", "-o", "remount,ro,bind", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v: %s", err, out)
	}
	if _, stderr, code := tc.cli(nil, "admin", "backup", "run", "--to", dir); code != 1 {
		t.Fatalf("backup to a read-only destination: exit %d: %s", code, stderr)
	}
	if _, stderr, code := tc.cli(nil, "admin", "backup", "schedule", "set", "--cron", "* * * * * *", "--to", dir, "--keep", "1"); code != 0 {
		t.Fatalf("schedule set: exit %d: %s", code, stderr)
	}
	eventually(t, time.Minute, func() error {
		out, _, code := tc.cli(nil, "admin", "status")
		if !strings.Contains(out, "backup schedule failing") || code != 1 {
			return fmt.Errorf("no warning in status (exit %d):\n%s", code, out)
		}
		return nil
	})
	if _, stderr, code := tc.cli(nil, "admin", "backup", "schedule", "clear"); code != 0 {
		t.Fatalf("schedule clear: exit %d: %s", code, stderr)
	}
	waitIdle(t, ctx, cl)
	if n := complete(); n != 3 {
		t.Fatalf("%d complete backups after failing runs, want the 3 from before", n)
	}
}

// waitIdle waits until no scheduled run is in flight.
func waitIdle(t *testing.T, ctx context.Context, cl *coord.Cluster) {
	t.Helper()
	eventually(t, time.Minute, func() error {
		runs, err := cl.BackupRuns(ctx)
		if err != nil {
			return err
		}
		if n := len(runs); n > 0 && runs[n-1].Finished.IsZero() {
			alive, err := cl.Coordinators(ctx)
			if err != nil {
				return err
			}
			for _, c := range alive {
				if c.ID == runs[n-1].Coordinator {
					return fmt.Errorf("run of %s in flight", runs[n-1].Tick)
				}
			}
		}
		return nil
	})
}
