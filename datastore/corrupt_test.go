package datastore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
	if kvs, err := s.Scan(testCtx(t), []int{7}, nil, nil, Limit{}); !errors.Is(err, ErrCorrupt) || kvs != nil {
		t.Fatalf("scan over corrupted value: %d pairs, %v", len(kvs), err)
	}
	// The log copy is intact.
	if _, err := s.ReadLog(1, Limit{}); err != nil {
		t.Fatalf("read log: %v", err)
	}
}

func TestKeyForErrorTruncates(t *testing.T) {
	got := keyForError(bytes.Repeat([]byte{0xff}, 4096))
	if len(got) > 400 || !strings.Contains(got, "4096 bytes") {
		t.Fatalf("key rendered as %d chars: %.80s", len(got), got)
	}
}

// ackedWrite is one mutation whose Write returned.
type ackedWrite struct {
	seq   uint64
	slot  int
	key   string
	value string
}

// logRecord is one record of a segment as the corruption tests see it.
type logRecord struct {
	off, end int64
	typ      byte
}

// buildLog writes 120 acknowledged commits of 1 to 3 mutations, the last
// of three 900-byte values, without committing them (nothing is applied,
// so every write lives in the log alone), and closes the store. With
// zeroed, the segment ends in zeros as a prepared spare segment does.
func buildLog(t *testing.T, zeroed bool) (dir string, acked []ackedWrite) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "s")
	s, err := Open(dir, Options{Slots: 16, NoSync: true, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	const commits = 120
	for i := range commits {
		n, size := 1+i%3, 50+(i*37)%850
		if i == commits-1 {
			n, size = 3, 900
		}
		var muts []Mutation
		for j := range n {
			key := fmt.Sprintf("k%03d-%d", i, j)
			muts = append(muts, Mutation{Slot: (i + j) % 16, Key: []byte(key), Value: bytes.Repeat([]byte{byte('a' + (i+j)%26)}, size)})
		}
		last, err := s.Write(testCtx(t), muts)
		if err != nil {
			t.Fatal(err)
		}
		for j, m := range muts {
			acked = append(acked, ackedWrite{last - uint64(n-1-j), m.Slot, string(m.Key), string(m.Value)})
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if zeroed {
		f, err := os.OpenFile(onlySegment(t, dir), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(make([]byte, 256<<10)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return dir, acked
}

// readLayout lists the records of a segment.
func readLayout(t *testing.T, path string) []logRecord {
	t.Helper()
	sr, err := openSegment(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer sr.close()
	var recs []logRecord
	for {
		at := sr.off
		rec, err := sr.next()
		if err == io.EOF {
			return recs
		}
		if err != nil {
			t.Fatalf("undamaged log: %v", err)
		}
		recs = append(recs, logRecord{off: at, end: sr.off, typ: rec.typ})
	}
}

// commitRecords returns the indexes of the commit records in recs.
func commitRecords(recs []logRecord) []int {
	var out []int
	for i, r := range recs {
		if r.typ == recCommit {
			out = append(out, i)
		}
	}
	return out
}

func flipByte(t *testing.T, path string, off int64, mask byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= mask
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// span is a commit's bytes, its commit record included.
type span struct{ start, end int64 }

// secondToLast returns the span of the final commit's predecessor.
func secondToLast(recs []logRecord, commits []int) span {
	return span{recs[commits[len(commits)-3]].end, recs[commits[len(commits)-2]].end}
}

// setSynced rewrites the commit record at offset at, the segment's last
// record, to say synced; -1 writes it as format version 4 did, without
// synced, and cuts the file after it.
func setSynced(t *testing.T, seg string, at, synced int64) {
	t.Helper()
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	m, _, ok := commitAt(b[at:], at)
	if !ok {
		t.Fatalf("no commit record at %d", at)
	}
	m.synced = synced
	rec := appendCommit(nil, m)
	if synced < 0 {
		var v [commitValueV4]byte
		binary.BigEndian.PutUint64(v[:], uint64(m.bytes))
		binary.BigEndian.PutUint32(v[8:], m.crc)
		binary.BigEndian.PutUint64(v[12:], m.first)
		copy(v[20:], commitMagic)
		rec = appendRecord(nil, recCommit, m.last, 0, 0, nil, v[:])
		if err := os.Truncate(seg, at+int64(len(rec))); err != nil {
			t.Fatal(err)
		}
	}
	writeAt(t, seg, at, rec)
}

// TestLogCorruption is the corruption suite of the write-ahead log: every
// case either opens with every acknowledged write present, or refuses with
// one line naming the file and offset; a torn tail (simulated by
// damage a crash can cause to the last, unacknowledged commit) is dropped.
func TestLogCorruption(t *testing.T) {
	const refuse = -1
	// Each case damages the segment; recs are its records, commits the
	// indexes of its commit records.
	type damage func(t *testing.T, seg string, recs []logRecord, commits []int)
	// dataIn returns the first data record of the n'th commit from the end
	// (1: the final commit).
	dataIn := func(recs []logRecord, commits []int, n int) logRecord {
		start := 0
		if i := len(commits) - 1 - n; i >= 0 {
			start = commits[i] + 1
		}
		return recs[start]
	}
	finalStart := func(recs []logRecord, commits []int) int64 { return recs[commits[len(commits)-2]].end }
	flipData := func(n int, at int64, mask byte) damage {
		return func(t *testing.T, seg string, recs []logRecord, commits []int) {
			flipByte(t, seg, dataIn(recs, commits, n).off+at, mask)
		}
	}
	flipCommit := func(n int, at int64, mask byte) damage {
		return func(t *testing.T, seg string, recs []logRecord, commits []int) {
			flipByte(t, seg, recs[commits[len(commits)-n]].off+at, mask)
		}
	}
	const mid = 60
	cases := []struct {
		name string
		damage
		// dropped is how many acknowledged writes at the end Open drops
		// as a torn tail; refuse: Open must refuse the log.
		dropped int
	}{
		{"length high bit mid-segment", flipData(mid, 1, 0x80), refuse},
		{"length low bit mid-segment", flipData(mid, 4, 0x01), refuse},
		{"payload checksum mid-segment", flipData(mid, 6, 0x10), refuse},
		{"header checksum mid-segment", flipData(mid, 11, 0x02), refuse},
		{"payload mid-segment", flipData(mid, recHeader+30, 0x04), refuse},
		{"tag mid-segment", flipData(mid, 0, 0x80), refuse},
		{"length high bit near the tail", flipData(3, 1, 0x80), refuse},
		{"payload near the tail", flipData(2, recHeader+40, 0x01), refuse},
		{"length in the final commit", flipData(1, 2, 0x40), refuse},
		{"payload in the final commit", flipData(1, recHeader+500, 0x01), refuse},
		{"commit record length, final", flipCommit(1, 3, 0x01), refuse},
		{"commit record payload, final", flipCommit(1, recHeader+30, 0x01), refuse},
		{"commit record checksum, mid-segment", flipCommit(mid, 7, 0x01), refuse},
		{"zeroed page inside the last commits", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			page := (recs[commits[len(commits)-15]].end + 4095) &^ 4095
			if page+4096 > recs[commits[len(commits)-2]].off {
				t.Fatalf("last commits too small for the test: page %d", page)
			}
			writeAt(t, seg, page, make([]byte, 4096))
		}, refuse},
		{"zeros then data, commit record present", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			writeAt(t, seg, (finalStart(recs, commits)+sectorSize)&^(sectorSize-1), make([]byte, sectorSize))
		}, refuse},
		{"garbage appended", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			writeAt(t, seg, recs[len(recs)-1].end, []byte("this is not a log record, just some garbage"))
		}, refuse},
		{"final commit cut by the end of the file", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			if err := os.Truncate(seg, finalStart(recs, commits)+1500); err != nil {
				t.Fatal(err)
			}
		}, 3},
		{"final commit record cut off", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			if err := os.Truncate(seg, recs[len(recs)-1].end-3); err != nil {
				t.Fatal(err)
			}
		}, 3},
		{"final commit's last sectors unwritten", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			from := (finalStart(recs, commits) + 2*sectorSize) &^ (sectorSize - 1)
			writeAt(t, seg, from, make([]byte, recs[len(recs)-1].end-from))
		}, 3},
		{"final commit's first sector unwritten", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			// Zeros from the commit's start to the next sector boundary
			// and the sector after: zeros, then data, then zeros.
			start := finalStart(recs, commits)
			next := (start + sectorSize) &^ (sectorSize - 1)
			writeAt(t, seg, start, make([]byte, next+sectorSize-start))
			last := recs[len(recs)-1]
			from := last.off &^ (sectorSize - 1)
			writeAt(t, seg, from, make([]byte, last.end-from))
		}, 3},
		{"records without a commit record appended", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			extra := appendRecord(nil, recPut, 9999, 0, 1, []byte("x"), []byte("y"))
			writeAt(t, seg, recs[len(recs)-1].end, extra)
		}, 0},
		{"commit lost, the one written during its fdatasync kept", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			prev := secondToLast(recs, commits)
			setSynced(t, seg, recs[commits[len(commits)-1]].off, prev.start)
			writeAt(t, seg, prev.start, make([]byte, prev.end-prev.start))
		}, 5},
		{"commit lost, the one written after its fdatasync kept", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			prev := secondToLast(recs, commits)
			writeAt(t, seg, prev.start, make([]byte, prev.end-prev.start))
		}, refuse},
		{"commit lost, two written during its fdatasync kept", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			lost := span{recs[commits[len(commits)-4]].end, recs[commits[len(commits)-3]].end}
			setSynced(t, seg, recs[commits[len(commits)-2]].off, lost.start)
			setSynced(t, seg, recs[commits[len(commits)-1]].off, lost.start)
			writeAt(t, seg, lost.start, make([]byte, lost.end-lost.start))
		}, refuse},
		{"commit lost, the next says less was synced than its start", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			prev := secondToLast(recs, commits)
			setSynced(t, seg, recs[commits[len(commits)-1]].off, prev.start-1)
			writeAt(t, seg, prev.start, make([]byte, prev.end-prev.start))
		}, refuse},
		{"commit lost, the next says more was synced than it holds", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			prev := secondToLast(recs, commits)
			at := recs[commits[len(commits)-1]].off
			setSynced(t, seg, at, at+1)
			writeAt(t, seg, prev.start, make([]byte, prev.end-prev.start))
		}, refuse},
		{"final commit record says more was synced than it holds", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			at := recs[commits[len(commits)-1]].off
			setSynced(t, seg, at, at+1)
		}, refuse},
		{"commit lost, the next commit record of format version 4", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			prev := secondToLast(recs, commits)
			setSynced(t, seg, recs[commits[len(commits)-1]].off, -1)
			writeAt(t, seg, prev.start, make([]byte, prev.end-prev.start))
		}, refuse},
		{"final commit record of format version 4", func(t *testing.T, seg string, recs []logRecord, commits []int) {
			setSynced(t, seg, recs[commits[len(commits)-1]].off, -1)
		}, 0},
	}
	for _, zeroed := range []bool{false, true} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/zeroed=%v", tc.name, zeroed), func(t *testing.T) {
				dir, acked := buildLog(t, zeroed)
				seg := onlySegment(t, dir)
				recs := readLayout(t, seg)
				commits := commitRecords(recs)
				tc.damage(t, seg, recs, commits)
				refuses := tc.dropped == refuse
				s, err := Open(dir, Options{AutoCommit: true, Logger: testLogger(t)})
				if refuses {
					if err == nil {
						s.Close()
						t.Fatalf("damaged log opened")
					}
					msg := err.Error()
					if !errors.Is(err, ErrCorrupt) || !strings.Contains(msg, seg) || !strings.Contains(msg, "offset") || strings.Contains(msg, "\n") {
						t.Fatalf("want one line naming %s and an offset, wrapping ErrCorrupt; got %q", seg, msg)
					}
					return
				}
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				defer s.Close()
				want := acked[:len(acked)-tc.dropped]
				if s.LastSeq() != want[len(want)-1].seq {
					t.Fatalf("last seq %d, want %d", s.LastSeq(), want[len(want)-1].seq)
				}
				for _, w := range want {
					if got, err := s.Get(w.slot, []byte(w.key)); err != nil || string(got) != w.value {
						t.Fatalf("seq %d key %s: %d bytes, %v", w.seq, w.key, len(got), err)
					}
				}
				// The log goes on where the kept part ends, and reopens.
				if seq := mustPut(t, s, 1, "after", "v"); seq != s.LastSeq() || seq != want[len(want)-1].seq+1 {
					t.Fatalf("write after recovery got seq %d", seq)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = openStore(t, dir, Options{})
				if mustGet(t, s, 1, "after") != "v" {
					t.Fatal("write after recovery lost")
				}
			})
		}
	}
}

// A torn commit whose successor's entries are already in bbolt cannot be
// a torn tail: applied entries were committed, hence acknowledged.
func TestTornTailWithAppliedSuccessor(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	s := openStore(t, dir, Options{Slots: 16, NoSync: true, Logger: discard()})
	for i := range 3 {
		mustPut(t, s, 1, fmt.Sprintf("k%d", i), "v")
	}
	waitApplied(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	seg := onlySegment(t, dir)
	recs := readLayout(t, seg)
	commits := commitRecords(recs)
	prev := secondToLast(recs, commits)
	setSynced(t, seg, recs[commits[len(commits)-1]].off, prev.start)
	writeAt(t, seg, prev.start, make([]byte, prev.end-prev.start))
	_, err := Open(dir, Options{AutoCommit: true, Logger: testLogger(t)})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "a commit after it holds seq 3") {
		t.Fatalf("open: %v, want ErrCorrupt naming the applied seq 3", err)
	}
}

// TestOlderSegmentDamage: only the newest segment can end in a torn
// commit; the same damage in an older one is refused, while zeros after an
// older segment's last commit (a spare's) are its clean end.
func TestOlderSegmentDamage(t *testing.T) {
	build := func(t *testing.T) (dir string, segs []segment) {
		dir = filepath.Join(t.TempDir(), "s")
		s, err := Open(dir, Options{Slots: 16, NoSync: true, Logger: discard(), segmentSize: 4096})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			mustPut(t, s, i%16, fmt.Sprintf("k%03d", i), strings.Repeat("v", 200))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		segs, err = listSegments(filepath.Join(dir, walDir))
		if err != nil || len(segs) < 3 {
			t.Fatalf("%d segments, %v", len(segs), err)
		}
		return dir, segs
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		opens  bool
	}{
		{"cut mid-record", func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()-100); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"last sector zeroed", func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			from := (fi.Size() - 1) &^ (sectorSize - 1)
			writeAt(t, path, from, make([]byte, fi.Size()-from))
		}, false},
		{"zeros after the last commit", func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			writeAt(t, path, fi.Size(), make([]byte, 64<<10))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, segs := build(t)
			older := segs[len(segs)-2].path
			tc.damage(t, older)
			s, err := Open(dir, Options{AutoCommit: true, Logger: testLogger(t)})
			if !tc.opens {
				if err == nil {
					s.Close()
					t.Fatal("damaged older segment opened")
				}
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), older) {
					t.Fatalf("open: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.LastSeq() != 100 {
				t.Fatalf("last seq %d", s.LastSeq())
			}
			for i := range 100 {
				mustGet(t, s, i%16, fmt.Sprintf("k%03d", i))
			}
		})
	}
}
