package datastore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// appendRecordV1 writes a record in the v1 format of stores of format
// version 2: length(4) | crc32c(payload)(4) | payload.
func appendRecordV1(dst []byte, typ byte, seq, epoch uint64, slot uint16, key, value []byte) []byte {
	var p []byte
	p = binary.BigEndian.AppendUint64(p, seq)
	p = binary.BigEndian.AppendUint64(p, epoch)
	p = append(p, typ)
	p = binary.BigEndian.AppendUint16(p, slot)
	p = binary.BigEndian.AppendUint32(p, uint32(len(key)))
	p = append(p, key...)
	p = append(p, value...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(p)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(p, castagnoli))
	return append(dst, p...)
}

// v1Store makes a store of format version 2 whose log holds, in v1
// records, an epoch marker for epoch 3 and puts k1..k4 (seq 1..4) and a
// delete of k2 (seq 5), none applied; it returns the directory and the
// segment.
func v1Store(t *testing.T) (dir, seg string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "s")
	s, err := Open(dir, Options{Slots: 16, NoSync: true, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	setFormatVersion(t, dir, formatVersionV1Log)
	log := appendRecordV1(nil, recEpoch, 0, 3, 0, nil, nil)
	for i, k := range []string{"k1", "k2", "k3", "k4"} {
		log = appendRecordV1(log, recPut, uint64(i+1), 3, 5, []byte(k), []byte("v-"+k))
	}
	log = appendRecordV1(log, recDelete, 5, 3, 5, []byte("k2"), nil)
	seg = segmentPath(filepath.Join(dir, walDir), 1)
	segs, _ := filepath.Glob(filepath.Join(dir, walDir, "*"+segmentExt))
	for _, p := range segs {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(seg, log, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, seg
}

// TestV1LogCompat: a store written with v1 log records opens with all its
// entries, appends v2 records after them, upgrades its format version, and
// reopens with both.
func TestV1LogCompat(t *testing.T) {
	dir, seg := v1Store(t)
	check := func(s *Store) {
		t.Helper()
		for _, k := range []string{"k1", "k3", "k4"} {
			if got := mustGet(t, s, 5, k); got != "v-"+k {
				t.Fatalf("%s = %q", k, got)
			}
		}
		if _, err := s.Get(5, []byte("k2")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted k2: %v", err)
		}
		if s.Epoch() != 3 {
			t.Fatalf("epoch %d, want 3", s.Epoch())
		}
	}
	s, err := Open(dir, Options{AutoCommit: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	check(s)
	if s.LastSeq() != 5 {
		t.Fatalf("last seq %d, want 5", s.LastSeq())
	}
	if seq := mustPut(t, s, 6, "new", "v2"); seq != 6 {
		t.Fatalf("first v2 write got seq %d", seq)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if recs := readLayout(t, seg); len(recs) != 6+2 || recs[6].typ != recPut || recs[7].typ != recCommit {
		t.Fatalf("segment after the upgrade: %+v", recs)
	}
	s = openStore(t, dir, Options{})
	check(s)
	if mustGet(t, s, 6, "new") != "v2" {
		t.Fatal("v2 write lost")
	}
	waitApplied(t, s)
	checkFormatVersion(t, s)
}

// TestV1LogDamage: a v1 log keeps the v1 rules: a record cut off at the
// end of the newest segment is a torn tail, a damaged one before the end
// is refused.
func TestV1LogDamage(t *testing.T) {
	t.Run("torn tail", func(t *testing.T) {
		dir, seg := v1Store(t)
		fi, err := os.Stat(seg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(seg, fi.Size()-3); err != nil {
			t.Fatal(err)
		}
		s := openStore(t, dir, Options{})
		if s.LastSeq() != 4 || mustGet(t, s, 5, "k2") != "v-k2" {
			t.Fatalf("last seq %d, want 4", s.LastSeq())
		}
	})
	t.Run("damaged record", func(t *testing.T) {
		dir, seg := v1Store(t)
		flipByte(t, seg, 31+recHeaderV1+recFixed+3, 0x01) // the value of k1
		_, err := Open(dir, Options{Logger: testLogger(t)})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), seg) {
			t.Fatalf("open: %v", err)
		}
	})
}

// A store of format version 4, whose commit records have no synced offset,
// opens, is upgraded to 5 and goes on in the same segment with the longer
// records; Verify and a reopen read both kinds.
func TestFormatV4Upgrade(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	s := openStore(t, dir, Options{Slots: 16, Logger: discard()})
	for i := range 3 {
		mustPut(t, s, 1, fmt.Sprintf("k%d", i), "v")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	seg := onlySegment(t, dir)
	recs := readLayout(t, seg)
	commits := commitRecords(recs)
	setSynced(t, seg, recs[commits[len(commits)-1]].off, -1)
	setFormatVersion(t, dir, formatVersionV4)
	s = openStore(t, dir, Options{Logger: discard()})
	mustPut(t, s, 1, "new", "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dir); err != nil {
		t.Fatalf("verify after the upgrade: %v", err)
	}
	recs = readLayout(t, seg)
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	short, long := 0, 0
	for _, r := range recs {
		if r.typ == recCommit {
			switch r.end - r.off {
			case commitRecordV4:
				short++
			case commitRecord:
				if m, _, ok := commitAt(b[r.off:], r.off); !ok || m.synced != r.off-m.bytes {
					t.Fatalf("commit record at %d after the upgrade: %+v", r.off, m)
				}
				long++
			}
		}
	}
	if short != 1 || long != len(commits) {
		t.Fatalf("%d short and %d long commit records, want 1 and %d", short, long, len(commits))
	}
	s = openStore(t, dir, Options{Logger: discard()})
	for _, k := range []string{"k0", "k1", "k2", "new"} {
		if mustGet(t, s, 1, k) != "v" {
			t.Fatalf("%s lost", k)
		}
	}
	checkFormatVersion(t, s)
}

// setFormatVersion makes the closed store in dir say it has format
// version v.
func setFormatVersion(t *testing.T, dir string, v uint64) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, dataFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return putMeta(tx, metaVersion, v) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkFormatVersion checks that the open store s was upgraded to this
// build's format version.
func checkFormatVersion(t *testing.T, s *Store) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		v, err := metaU64(tx, metaVersion)
		if err == nil && v != formatVersion {
			t.Errorf("format version %d after the upgrade", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
