package datastore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// appliedStore writes 2000 keys over 4 slots, applies them, closes the
// store and returns its directory and keys.
func appliedStore(t *testing.T) (dir string, keys map[string]int) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "s")
	s, err := Open(dir, Options{Slots: 16, NoSync: true, AutoCommit: true, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	keys = make(map[string]int)
	var muts []Mutation
	for i := range 2000 {
		k := fmt.Sprintf("key-%05d", i)
		keys[k] = i % 4
		muts = append(muts, Mutation{Slot: i % 4, Key: []byte(k), Value: []byte("value-" + k)})
	}
	if _, err := s.Write(testCtx(t), muts); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, keys
}

// boltPages returns the offsets of the pages of a bbolt file whose flags
// are want (0x02: leaf, 0x04: meta), skipping overflow pages.
func boltPages(t *testing.T, path string, want uint16) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := int64(binary.LittleEndian.Uint32(b[16+8:])) // meta: magic, version, page size
	var out []int64
	for off := int64(0); off+ps <= int64(len(b)); off += ps {
		if binary.LittleEndian.Uint16(b[off+8:]) == want && (want != 0x02 || binary.LittleEndian.Uint16(b[off+10:]) > 0) {
			out = append(out, off)
		}
		off += ps * int64(binary.LittleEndian.Uint32(b[off+12:]))
	}
	return out
}

// freelistPage returns the offset of the free list page the newest meta
// page names, and the page size.
func freelistPage(t *testing.T, path string) (off, ps int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	ps = int64(le.Uint32(b[16+8:]))
	m0, m1 := b[16:], b[ps+16:]
	m := m0
	if le.Uint64(m1[48:]) > le.Uint64(m0[48:]) {
		m = m1
	}
	id := le.Uint64(m[32:])
	if id == 1<<64-1 {
		t.Fatal("the data file keeps no free list")
	}
	return int64(id) * ps, ps
}

// TestDataFileDamage: a damaged bbolt file gives a one-line error naming
// it, or opens and returns every value or ErrCorrupt; never a panic or a
// wrong value. Verify finds each damage.
func TestDataFileDamage(t *testing.T) {
	type damage func(t *testing.T, path string)
	write := func(t *testing.T, path string, off int64, data []byte) { writeAt(t, path, off, data) }
	leaf := func(t *testing.T, path string) int64 {
		leaves := boltPages(t, path, 0x02)
		if len(leaves) < 2 {
			t.Fatalf("%d leaf pages", len(leaves))
		}
		return leaves[len(leaves)/2]
	}
	cases := []struct {
		name      string
		damage    damage
		mustOpen  bool // one meta page is enough for bbolt
		mustClean bool // Verify finds nothing
	}{
		{"both meta pages", func(t *testing.T, path string) {
			for _, off := range boltPages(t, path, 0x04) {
				flipByte(t, path, off+16+1, 0x20) // the magic
			}
		}, false, false},
		{"one meta page", func(t *testing.T, path string) {
			flipByte(t, path, boltPages(t, path, 0x04)[1]+16+40, 0x20)
		}, true, true},
		{"leaf page type", func(t *testing.T, path string) {
			write(t, path, leaf(t, path)+8, []byte{0x40, 0})
		}, false, false},
		{"leaf page count", func(t *testing.T, path string) {
			write(t, path, leaf(t, path)+10, []byte{0xff, 0x7f})
		}, false, false},
		{"leaf element offsets", func(t *testing.T, path string) {
			write(t, path, leaf(t, path)+16, []byte{0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0x7f})
		}, false, false},
		{"leaf values", func(t *testing.T, path string) {
			off := leaf(t, path)
			b, _ := os.ReadFile(path)
			i := strings.Index(string(b[off:off+16<<10]), "value-key-")
			if i < 0 {
				t.Fatal("no value in the leaf page")
			}
			flipByte(t, path, off+int64(i)+12, 0x01)
		}, true, false},
		{"free_list_names_a_page_in_use", func(t *testing.T, path string) {
			free, ps := freelistPage(t, path)
			write(t, path, free+10, binary.LittleEndian.AppendUint16(nil, 1)) // the count
			write(t, path, free+16, binary.LittleEndian.AppendUint64(nil, uint64(leaf(t, path)/ps)))
		}, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, keys := appliedStore(t)
			path := filepath.Join(dir, dataFile)
			tc.damage(t, path)
			verr := Verify(dir)
			if tc.mustClean != (verr == nil) {
				t.Fatalf("verify: %v", verr)
			}
			if verr != nil && (!errors.Is(verr, ErrCorrupt) || !strings.Contains(verr.Error(), path) || strings.Contains(verr.Error(), "\n")) {
				t.Fatalf("verify: want one line naming %s, wrapping ErrCorrupt: %q", path, verr)
			}
			s, err := Open(dir, Options{AutoCommit: true, Logger: testLogger(t)})
			if err != nil {
				if tc.mustOpen || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("open: %v", err)
				}
				t.Logf("refused: %v", err)
				return
			}
			defer s.Close()
			bad := 0
			for k, slot := range keys {
				v, err := s.Get(slot, []byte(k))
				switch {
				case errors.Is(err, ErrCorrupt):
					bad++
				case err != nil || string(v) != "value-"+k:
					t.Fatalf("get %s: %q, %v", k, v, err)
				}
			}
			if _, err := s.Scan(testCtx(t), []int{0, 1, 2, 3}, nil, nil, Limit{}); err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("scan: %v", err)
			}
			if tc.mustClean && bad > 0 {
				t.Fatalf("%d values corrupt", bad)
			}
		})
	}
}

// TestSetAside: the store's files move into a damaged-* directory, the
// others stay, and the store reopens empty.
func TestSetAside(t *testing.T) {
	dir, _ := appliedStore(t)
	if err := os.WriteFile(filepath.Join(dir, "node-id"), []byte("n1"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir, Options{})
	if _, err := SetAside(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("set aside an open store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	aside, err := SetAside(dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(aside) != dir || !strings.HasPrefix(filepath.Base(aside), "damaged-") {
		t.Fatalf("set aside into %s", aside)
	}
	for _, name := range []string{dataFile, walDir} {
		if _, err := os.Stat(filepath.Join(aside, name)); err != nil {
			t.Fatalf("%s not moved: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s still in place: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node-id")); err != nil {
		t.Fatalf("node id moved: %v", err)
	}
	if err := Verify(aside); err != nil {
		t.Fatalf("the moved store: %v", err)
	}
	s = openStore(t, dir, Options{Slots: 16})
	if s.LastSeq() != 0 {
		t.Fatalf("reopened store at seq %d", s.LastSeq())
	}
	if again, err := SetAside(filepath.Join(t.TempDir(), "empty")); err == nil && again != "" {
		t.Fatalf("set aside of an empty directory: %q", again)
	}
}

// A data file written without a kept free list (as releases before this
// one wrote it) opens, keeps every value, and keeps a free list from then
// on.
func TestOpenKeepsTheFreeList(t *testing.T) {
	dir, keys := appliedStore(t)
	path := filepath.Join(dir, dataFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // both meta pages
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte("x"), nil) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := int64(binary.LittleEndian.Uint32(b[16+8:]))
	for _, m := range [][]byte{b[16:], b[ps+16:]} {
		if binary.LittleEndian.Uint64(m[32:]) != 1<<64-1 {
			t.Fatal("the file still names a free list page")
		}
	}
	s := openStore(t, dir, Options{})
	for k, slot := range keys {
		if v, err := s.Get(slot, []byte(k)); err != nil || string(v) != "value-"+k {
			t.Fatalf("get %s: %q, %v", k, v, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	freelistPage(t, path)
	if err := Verify(dir); err != nil {
		t.Fatal(err)
	}
}
