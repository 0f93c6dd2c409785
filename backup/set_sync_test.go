package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncWatch is a directory store that records which staged files were
// not synced since they were last staged, and can fail its syncs.
type syncWatch struct {
	*dirStore
	failSync error

	mu       sync.Mutex
	pending  map[string]bool // staged, not synced since
	syncs    int
	manifest []string // files pending when the manifest was put
	wrote    bool     // the manifest was put
}

func newSyncWatch(t *testing.T) (*syncWatch, Store) {
	d, err := openDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := &syncWatch{dirStore: d, pending: map[string]bool{}}
	return w, checked{w}
}

func (w *syncWatch) stage(name string) (*stagedFile, error) {
	w.mu.Lock()
	w.pending[name] = true
	w.mu.Unlock()
	return w.dirStore.stage(name)
}

func (w *syncWatch) syncObjects(names []string) error {
	if w.failSync != nil {
		return w.failSync
	}
	time.Sleep(100 * time.Millisecond) // a slow disk: a manifest written without waiting for the syncs would find files pending
	err := w.dirStore.syncObjects(names)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.syncs++
	for _, n := range names {
		delete(w.pending, n)
	}
	return err
}

func (w *syncWatch) put(ctx context.Context, name string, r io.Reader) error {
	if strings.HasSuffix(name, "/"+ManifestName) {
		w.mu.Lock()
		w.wrote = true
		for n := range w.pending {
			w.manifest = append(w.manifest, n)
		}
		w.mu.Unlock()
	}
	return w.dirStore.put(ctx, name, r)
}

const syncTestSlots = 16

// writeSyncTestSet writes every slot's file into a new set, slot 3 twice.
func writeSyncTestSet(t *testing.T, store Store) *Set {
	t.Helper()
	set, err := NewSet(store, NewID(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for slot := range syncTestSlots {
		wg.Go(func() {
			for range 1 + slot/3%2 {
				hdr := SlotHeader{Slot: slot, Slots: syncTestSlots, Group: "g1", Epoch: 1, Sequence: 9}
				_, err := set.WriteSlot(context.Background(), hdr, func(add func(k, v []byte) error) error {
					for i := range 100 {
						if err := add(fmt.Appendf(nil, "k%d-%d", slot, i), make([]byte, 100)); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	return set
}

func syncTestManifest() *Manifest {
	return &Manifest{Cluster: "test", SlotCount: syncTestSlots, Start: time.Now().UTC(), Groups: map[string]GroupPoint{"g1": {Epoch: 1, Sequence: 9, Node: "n1"}}}
}

// Slot files are staged without an fsync each and synced in rounds; the
// manifest is written only once every file, as last written, is synced.
func TestSetSyncsStagedFilesBeforeTheManifest(t *testing.T) {
	w, store := newSyncWatch(t)
	set := writeSyncTestSet(t, store)
	if err := set.Finish(context.Background(), syncTestManifest()); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.wrote || len(w.manifest) > 0 {
		t.Fatalf("manifest written %v, with files not synced: %v", w.wrote, w.manifest)
	}
	if err := Verify(context.Background(), store, set.ID()); err != nil {
		t.Fatal(err)
	}
}

// A sync that fails leaves the backup without a manifest: it lists as
// incomplete, and Finish says why.
func TestSetFailedSyncLeavesTheBackupIncomplete(t *testing.T) {
	w, store := newSyncWatch(t)
	w.failSync = errors.New("input/output error")
	set := writeSyncTestSet(t, store)
	err := set.Finish(context.Background(), syncTestManifest())
	if err == nil || !strings.Contains(err.Error(), "sync: input/output error") || !strings.Contains(err.Error(), set.ID()) {
		t.Fatalf("finish after a failed sync: %v", err)
	}
	if w.wrote {
		t.Fatal("the manifest was written")
	}
	infos, err := List(context.Background(), store)
	if err != nil || len(infos) != 1 || infos[0].Complete || !errors.Is(infos[0].Err, ErrIncomplete) {
		t.Fatalf("list: %+v, %v; want one incomplete backup", infos, err)
	}
}
