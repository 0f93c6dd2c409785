package backup_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/backup"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// makeSets writes one backup per letter of kinds into a directory store,
// an hour apart, each file's mtime a minute after its backup's start (or
// at written, when given for that index): G a good backup, B a complete
// one with a damaged file, I an incomplete one. It returns their IDs.
func makeSets(t *testing.T, dir string, store backup.Store, kinds string, written map[int]time.Time) []string {
	t.Helper()
	var ids []string
	for i, k := range kinds {
		start := t0.Add(time.Duration(i) * time.Hour)
		var id string
		switch k {
		case 'G', 'B':
			id = writeSet(t, store, start)
			if k == 'B' {
				editObject(t, store, id+"/slot-0002.tyb", func(d []byte) []byte { d[len(d)-30] ^= 1; return d })
			}
		case 'I':
			set, err := backup.NewSet(store, backup.NewID(start))
			if err != nil {
				t.Fatal(err)
			}
			writeSlots(t, set, 0, 1, 2)
			id = set.ID()
		}
		mtime, ok := written[i]
		if !ok {
			mtime = start.Add(time.Minute)
		}
		files, _ := filepath.Glob(filepath.Join(dir, id, "*"))
		for _, f := range files {
			if err := os.Chtimes(f, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, id)
	}
	return ids
}

func TestPrune(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kinds   string
		keep    int
		written map[int]time.Time
		deleted []int // indexes into kinds
	}{
		{"keeps the newest good", "GGGG", 2, nil, []int{0, 1}},
		{"keeps all when not more than keep", "GG", 2, nil, nil},
		{"fewer good than keep", "GGIII", 3, nil, nil},
		{"fewer good than keep: older damaged ones stay", "BGGI", 3, nil, nil},
		{"failing runs never cost the last good", "GBBIB", 1, nil, nil},
		{"no good backup", "IBI", 1, nil, nil},
		{"everything older than the kept window", "GBGIG", 2, nil, []int{0, 1, 3}},
		{"leftovers older than the newest good", "GIGI", 5, nil, []int{1}},
		{"a run still writing is kept", "GIG", 5, map[int]time.Time{1: t0.Add(10 * time.Hour)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			store := openStore(t, dir, backup.StoreOptions{})
			ids := makeSets(t, dir, store, tc.kinds, tc.written)
			deleted, err := backup.Prune(context.Background(), store, tc.keep, nil)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, i := range tc.deleted {
				want = append(want, ids[i])
			}
			if !slices.Equal(deleted, want) {
				t.Fatalf("deleted %v, want %v (of %v)", deleted, want, ids)
			}
			infos, err := backup.List(context.Background(), store)
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, in := range infos {
				left = append(left, in.ID)
			}
			if rest := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return slices.Contains(want, id) }); !slices.Equal(left, rest) {
				t.Fatalf("left %v, want %v", left, rest)
			}
			// Nothing of a deleted backup remains, not even its directory.
			for _, id := range deleted {
				if _, err := os.Stat(filepath.Join(dir, id)); !os.IsNotExist(err) {
					t.Fatalf("%s is still there: %v", id, err)
				}
			}
		})
	}
}

// Prune asks isGood newest first, and only until it has keep good ones.
func TestPruneAsksOnlyWhatItNeeds(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir, backup.StoreOptions{})
	ids := makeSets(t, dir, store, "GGGGG", nil)
	var asked []string
	deleted, err := backup.Prune(context.Background(), store, 2, func(in backup.Info) bool {
		asked = append(asked, in.ID)
		return in.ID != ids[3] // pretend the second newest fails verification
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{ids[4], ids[3], ids[2]}; !slices.Equal(asked, want) {
		t.Fatalf("asked about %v, want %v", asked, want)
	}
	if want := ids[:2]; !slices.Equal(deleted, want) {
		t.Fatalf("deleted %v, want %v", deleted, want)
	}
}

func TestPruneRefusesKeepZero(t *testing.T) {
	store := openStore(t, t.TempDir(), backup.StoreOptions{})
	if _, err := backup.Prune(context.Background(), store, 0, nil); err == nil || !strings.Contains(err.Error(), "keep 0, want at least 1") {
		t.Fatalf("prune keep 0: %v", err)
	}
}
