package datastore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const canary = "CANARY-0123456789-abcdefghijklmnopqrstuvwxyz"

// flipIn flips one byte inside every copy of canary in file.
func flipIn(t *testing.T, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for off := 0; ; {
		i := bytes.Index(data[off:], []byte(canary))
		if i < 0 {
			break
		}
		data[off+i+5] ^= 0x01
		off += i + len(canary)
		n++
	}
	if n == 0 {
		t.Fatalf("canary not found in %s", file)
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func onlySegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := listSegments(filepath.Join(dir, walDir))
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	return segs[0].path
}

func TestCorruptValue(t *testing.T) {
	s, dir := newStore(t, Options{NoSync: true})
	mustPut(t, s, 7, "neighbour", "fine")
	mustPut(t, s, 7, "victim-key", canary)
	waitApplied(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	flipIn(t, filepath.Join(dir, dataFile))
	s = openStore(t, dir, Options{})
	key := []byte("victim-key")
	_, err := s.Get(7, key)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("get corrupted value: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "slot 7") || !strings.Contains(msg, `"victim-key"`) {
		t.Fatalf("error does not name slot and key: %q", msg)
	}
	if got := mustGet(t, s, 7, "neighbour"); got != "fine" {
		t.Fatalf("neighbour = %q", got)
	}
	res := s.GetMany([]KeyRef{{Slot: 7, Key: key}, {Slot: 7, Key: []byte("neighbour")}})
	if !errors.Is(res[0].Err, ErrCorrupt) || res[0].Value != nil || res[1].Err != nil {
		t.Fatalf("GetMany = %+v", res)
	}
	if kvs, err := s.Scan(testCtx(t), []int{7}, nil, nil, 0); !errors.Is(err, ErrCorrupt) || kvs != nil {
		t.Fatalf("scan over corrupted value: %d pairs, %v", len(kvs), err)
	}
	// The log copy is intact.
	if _, err := s.ReadLog(1, 0); err != nil {
		t.Fatalf("read log: %v", err)
	}
}

// writeThree writes three entries, the middle one holding the canary,
// without committing them (so Open must replay all three), and closes.
func writeThree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "s")
	s, err := Open(dir, Options{Slots: 16, NoSync: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"first", canary, "third"} {
		if _, err := s.Write(testCtx(t), []Mutation{{Slot: 7, Key: []byte(v[:5]), Value: []byte(v)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCorruptLogRecord(t *testing.T) {
	dir := writeThree(t)
	seg := onlySegment(t, dir)
	flipIn(t, seg)
	_, err := Open(dir, Options{Logger: testLogger(t)})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a corrupt middle record: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, seg) || !strings.Contains(msg, "offset") {
		t.Fatalf("error does not name file and offset: %q", msg)
	}
}

func TestTornTail(t *testing.T) {
	dir := writeThree(t)
	seg := onlySegment(t, dir)
	if err := os.Truncate(seg, recordsEnd(t, seg)-3); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir, Options{})
	if s.LastSeq() != 2 || s.CommittedSeq() != 2 {
		t.Fatalf("after torn tail: last %d committed %d, want 2", s.LastSeq(), s.CommittedSeq())
	}
	if got := mustGet(t, s, 7, "CANAR"); got != canary {
		t.Fatalf("second entry = %q", got)
	}
	if _, err := s.Get(7, []byte("third")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("torn entry: %v", err)
	}
	if seq := mustPut(t, s, 1, "next", "v"); seq != 3 {
		t.Fatalf("next seq %d, want 3", seq)
	}
}

func TestKeyForErrorTruncates(t *testing.T) {
	got := keyForError(bytes.Repeat([]byte{0xff}, 4096))
	if len(got) > 400 || !strings.Contains(got, "4096 bytes") {
		t.Fatalf("key rendered as %d chars: %.80s", len(got), got)
	}
}

// recordsEnd is where a segment's records end and the zeros written ahead
// of them begin.
func recordsEnd(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	return int64(end)
}

// TestTornTailBeforeZeros: a crash that left the end of the last record
// unwritten inside the zeros written ahead of the log drops that record.
func TestTornTailBeforeZeros(t *testing.T) {
	dir := writeThree(t)
	seg := onlySegment(t, dir)
	end := recordsEnd(t, seg)
	f, err := os.OpenFile(seg, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 5), end-5); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s := openStore(t, dir, Options{})
	if s.LastSeq() != 2 {
		t.Fatalf("after a torn last record: last %d, want 2", s.LastSeq())
	}
	if _, err := s.Write(context.Background(), []Mutation{{Slot: 1, Key: []byte("after"), Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	if s.LastSeq() != 3 {
		t.Fatalf("write after recovery got seq %d, want 3", s.LastSeq())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{})
	if s.LastSeq() != 3 || mustGet(t, s, 1, "after") != "v" {
		t.Fatalf("after reopening: last %d", s.LastSeq())
	}
}
