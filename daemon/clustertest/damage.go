package clustertest

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// DamageLog flips a byte in the middle of the records of the largest
// write-ahead-log segment of the closed store in storeDir (a node's
// Dir/store), where Open refuses it as damaged, and returns the segment's
// path.
func DamageLog(t testing.TB, storeDir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(storeDir, "wal", "*.log"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no log segment in %s (%v)", storeDir, err)
	}
	var seg string
	var data []byte
	for _, s := range segs {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if used := usedLen(b); used > usedLen(data) {
			seg, data = s, b
		}
	}
	used := usedLen(data)
	if used < 1024 {
		t.Fatalf("log segments in %s hold %d bytes: too few to damage the middle", storeDir, used)
	}
	// A nonzero byte is inside a record (a zero might be padding), and
	// every record is checksummed.
	at := used / 2
	for data[at] == 0 {
		at++
	}
	flip(t, seg, int64(at))
	return seg
}

// usedLen is the length of b without its trailing zeros (a segment is
// preallocated).
func usedLen(b []byte) int { return len(strings.TrimRight(string(b), "\x00")) }

// DamageDataFile breaks the magic number of both meta pages of the bbolt
// file of the closed store in storeDir, so Open refuses it as damaged, and
// returns the file's path.
func DamageDataFile(t testing.TB, storeDir string) string {
	t.Helper()
	path := filepath.Join(storeDir, "data.db")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A meta page: page header (16 bytes), magic (4), version (4), page size (4).
	const header = 16
	pageSize := int64(binary.LittleEndian.Uint32(b[header+8:]))
	for _, page := range []int64{0, pageSize} {
		flip(t, path, page+header)
	}
	return path
}

func flip(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}
