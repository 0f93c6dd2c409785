package backup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/backup"
	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/clustertest"
)

// newCluster starts a serving in-process cluster: one coordinator and
// groups of size nodes each, every secondary in sync.
func newCluster(t *testing.T, opts clustertest.Options, groups []string, size int) *clustertest.Cluster {
	t.Helper()
	opts.ReplicationFactor = size
	c := clustertest.New(t, opts)
	c.StartCoordinator("c1")
	for _, g := range groups {
		for i := range size {
			c.StartNode(fmt.Sprintf("%s-%d", g, i), g)
		}
	}
	c.WaitServing()
	for _, g := range groups {
		c.WaitGroup(g, func(g *coord.Group) bool { return len(g.ISR) == size })
	}
	return c
}

// fill writes n keys (binary ones and hash tags among them, some large
// values) and returns them.
func fill(t *testing.T, kv *client.Client, n int) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := make(map[string][]byte, n)
	for i := range n {
		key := fmt.Sprintf("k%05d", i)
		switch i % 4 {
		case 1:
			key = fmt.Sprintf("{tag%d}.%d", i%7, i)
		case 2:
			key = string([]byte{0, 0xff, byte(i), byte(i >> 8), '\n'})
		}
		value := bytes.Repeat([]byte{byte(i)}, 1+i%200)
		if i%97 == 0 {
			value = bytes.Repeat([]byte("L"), 300<<10)
		}
		if err := kv.Put(ctx, []byte(key), value); err != nil {
			t.Fatal(err)
		}
		want[key] = value
	}
	return want
}

func dirStore(t *testing.T) backup.Store {
	t.Helper()
	s, err := backup.OpenStore(context.Background(), t.TempDir(), backup.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// A backup of two groups copies each from its in-sync secondary, cut at
// one point per group, and restores into a cluster of another shape (one
// group, another slot count) with every key; a restore refuses a
// non-empty cluster unless told to overwrite.
func TestRunAndRestoreIntoAnotherShape(t *testing.T) {
	src := newCluster(t, clustertest.Options{Slots: 16, AssignDelay: 2 * time.Second}, []string{"g1", "g2"}, 2)
	want := fill(t, src.Client(), 600)
	store := dirStore(t)
	ctx := testCtx(t)
	var reports []backup.Progress
	res, err := backup.Run(ctx, backup.RunConfig{Cluster: src.Coord(), Store: store, Progress: func(p backup.Progress) { reports = append(reports, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Slots != 16 || res.Keys != int64(len(want)) || len(res.Groups) != 2 {
		t.Fatalf("result %+v, want 16 slots and %d keys of 2 groups", res, len(want))
	}
	if last := reports[len(reports)-1]; !last.Done || last.Keys != res.Keys || last.Slots != 16 {
		t.Errorf("last progress %+v", last)
	}
	for name, pt := range res.Groups {
		g, _, err := src.Coord().Group(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if pt.Node == g.Primary || !slices.Contains(g.ISR, pt.Node) || pt.Epoch != g.Epoch || pt.Sequence == 0 {
			t.Errorf("group %s copied at %+v; want an in-sync secondary at epoch %d (group %+v)", name, pt, g.Epoch, g)
		}
	}
	if err := backup.Verify(ctx, store, res.ID); err != nil {
		t.Fatal(err)
	}

	dst := newCluster(t, clustertest.Options{Slots: 8}, []string{"only"}, 1)
	kv := dst.Client()
	rres, err := backup.Restore(ctx, backup.RestoreConfig{Cluster: dst.Coord(), Store: store, ID: res.ID})
	if err != nil {
		t.Fatal(err)
	}
	if rres.Keys != int64(len(want)) {
		t.Fatalf("restored %d keys, want %d", rres.Keys, len(want))
	}
	for k, v := range want {
		got, err := kv.Get(ctx, []byte(k))
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("key %q after restore: %d bytes, %v; want %d bytes", k, len(got), err, len(v))
		}
	}
	_, err = backup.Restore(ctx, backup.RestoreConfig{Cluster: dst.Coord(), Store: store, ID: res.ID})
	if !errors.Is(err, backup.ErrNotEmpty) {
		t.Fatalf("restore into a non-empty cluster: %v", err)
	}
	if _, err := backup.Restore(ctx, backup.RestoreConfig{Cluster: dst.Coord(), Store: store, ID: res.ID, Overwrite: true}); err != nil {
		t.Fatalf("restore again with overwrite: %v", err)
	}
}

// A damaged slot file fails the restore before anything is written, and
// the error names the file.
func TestRestoreRefusesADamagedBackup(t *testing.T) {
	src := newCluster(t, clustertest.Options{Slots: 8}, []string{"g1"}, 1)
	fill(t, src.Client(), 100)
	dir := t.TempDir()
	store, err := backup.OpenStore(context.Background(), dir, backup.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	res, err := backup.Run(ctx, backup.RunConfig{Cluster: src.Coord(), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, res.ID, backup.SlotFileName(5))
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := newCluster(t, clustertest.Options{Slots: 8}, []string{"g1"}, 1)
	_, err = backup.Restore(ctx, backup.RestoreConfig{Cluster: dst.Coord(), Store: store, ID: res.ID})
	if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), backup.SlotFileName(5)) {
		t.Fatalf("restore of a damaged backup: %v", err)
	}
	var keys int
	if err := dst.Client().Scan(ctx, client.ScanOptions{}, func(k, v []byte) error { keys++; return nil }); err != nil {
		t.Fatal(err)
	}
	if keys != 0 {
		t.Fatalf("a refused restore wrote %d keys", keys)
	}
}
