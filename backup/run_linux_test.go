package backup_test

import (
	"context"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/backup"
	"github.com/thunderyurts/thunderyurts/daemon/clustertest"
	"github.com/thunderyurts/thunderyurts/internal/sysproc"
)

// niceWatch is a store that records the nice values of the threads that
// write and read its objects.
type niceWatch struct {
	backup.Store
	mu    sync.Mutex
	nices map[string]map[int]int // by operation: nice value → calls
}

func (w *niceWatch) note(op string) {
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	nice := 20 - prio // the raw call answers 20 - nice
	if err != nil {
		nice = -100
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nices[op] == nil {
		w.nices[op] = map[int]int{}
	}
	w.nices[op][nice]++
}

func (w *niceWatch) Put(ctx context.Context, name string, r io.Reader) error {
	w.note("put")
	return w.Store.Put(ctx, name, r)
}

func (w *niceWatch) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	w.note("open")
	return w.Store.Open(ctx, name)
}

// A backup is background work: its files are written and read back on
// threads at sysproc.BackgroundNice, and the caller's thread keeps its
// priority; a restore, which clients wait on, reads at normal priority.
func TestRunIsBackgroundWork(t *testing.T) {
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	if nice := 20 - prio; nice >= sysproc.BackgroundNice {
		t.Skipf("the test runs at nice %d already", nice)
	}
	src := newCluster(t, clustertest.Options{Slots: 8, AssignDelay: 2 * time.Second}, []string{"g1", "g2"}, 2)
	fill(t, src.Client(), 100)
	store := &niceWatch{Store: dirStore(t), nices: map[string]map[int]int{}}
	ctx := testCtx(t)
	res, err := backup.Run(ctx, backup.RunConfig{Cluster: src.Coord(), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"put", "open"} {
		if n := store.nices[op]; len(n) != 1 || n[sysproc.BackgroundNice] == 0 {
			t.Errorf("backup: %s calls by nice value %v, want all at %d", op, n, sysproc.BackgroundNice)
		}
	}
	clear(store.nices)
	dst := newCluster(t, clustertest.Options{Slots: 8}, []string{"only"}, 1)
	if _, err := backup.Restore(ctx, backup.RestoreConfig{Cluster: dst.Coord(), Store: store, ID: res.ID}); err != nil {
		t.Fatal(err)
	}
	if n := store.nices["open"]; n[sysproc.BackgroundNice] != 0 {
		t.Errorf("restore: open calls by nice value %v, want none at %d", n, sysproc.BackgroundNice)
	}
}
