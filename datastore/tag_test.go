package datastore

import (
	"hash/crc32"
	"path/filepath"
	"slices"
	"testing"
)

// loggedTags returns the log's entries from seq 1 without keys, values and epochs.
func loggedTags(t *testing.T, s *Store) []LogEntry {
	t.Helper()
	entries, err := s.ReadLog(1, Limit{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		entries[i].Key, entries[i].Value, entries[i].Epoch = nil, nil, 0
	}
	return entries
}

func openClose(t *testing.T, dir string, opts Options, fn func(s *Store)) {
	t.Helper()
	opts.Slots, opts.Logger = 16, testLogger(t)
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	fn(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTagsRoundTrip: a write's tag is in its log record (a tagged type;
// untagged writes keep the old types), ReadLog returns it, and recovery
// keeps it both for entries read back from the segment files (applied) and
// for entries replayed into memory (unapplied).
func TestTagsRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	a, b, c := Tag{Client: 7, Seq: 1}, Tag{Client: 7, Seq: 2}, Tag{Client: 1<<64 - 1, Seq: 1<<64 - 1}
	want := []LogEntry{
		{Seq: 1, Slot: 3, Tag: a},
		{Seq: 2, Slot: 3, Delete: true, Tag: b},
		{Seq: 3, Slot: 4},
		{Seq: 4, Slot: 4, Delete: true},
		{Seq: 5, Slot: 5, Tag: c},
	}
	openClose(t, dir, Options{AutoCommit: true}, func(s *Store) {
		_, err := s.Write(testCtx(t), []Mutation{
			{Slot: 3, Key: []byte("k"), Value: []byte("v"), Tag: a},
			{Slot: 3, Key: []byte("k"), Delete: true, Tag: b},
			{Slot: 4, Key: []byte("u"), Value: []byte("w")},
			{Slot: 4, Key: []byte("u"), Delete: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := loggedTags(t, s); !slices.EqualFunc(got, want[:4], sameEntry) {
			t.Fatalf("before recovery: %+v", got)
		}
		waitApplied(t, s)
	})
	// Not committed, so not applied: recovery replays it into memory.
	openClose(t, dir, Options{}, func(s *Store) {
		if _, err := s.Write(testCtx(t), []Mutation{{Slot: 5, Key: []byte("x"), Value: []byte("y"), Tag: c}}); err != nil {
			t.Fatal(err)
		}
	})
	openClose(t, dir, Options{}, func(s *Store) {
		if s.AppliedSeq() != 4 {
			t.Fatalf("applied seq %d, want 4", s.AppliedSeq())
		}
		if got := loggedTags(t, s); !slices.EqualFunc(got, want, sameEntry) {
			t.Fatalf("after recovery: %+v", got)
		}
	})
	var types []byte
	for _, r := range readLayout(t, segmentPath(filepath.Join(dir, walDir), 1)) {
		if r.typ != recCommit && r.typ != recEpoch {
			types = append(types, r.typ)
		}
	}
	if wantTypes := []byte{recPutTagged, recDeleteTagged, recPut, recDelete, recPutTagged}; !slices.Equal(types, wantTypes) {
		t.Fatalf("record types %v, want %v", types, wantTypes)
	}
}

func sameEntry(a, b LogEntry) bool {
	return a.Seq == b.Seq && a.Slot == b.Slot && a.Delete == b.Delete && a.Tag == b.Tag
}

// TestApplyLogKeepsTags: entries a follower appends keep their tags.
func TestApplyLogKeepsTags(t *testing.T) {
	s, _ := newStore(t, Options{})
	in := []LogEntry{
		{Seq: 1, Epoch: 2, Slot: 1, Key: []byte("a"), Value: []byte("1"), Tag: Tag{Client: 9, Seq: 4}},
		{Seq: 2, Epoch: 2, Slot: 1, Key: []byte("a"), Delete: true},
		{Seq: 3, Epoch: 2, Slot: 1, Key: []byte("b"), Delete: true, Tag: Tag{Client: 9, Seq: 5}},
	}
	if err := s.ApplyLog(testCtx(t), in); err != nil {
		t.Fatal(err)
	}
	if got := loggedTags(t, s); !slices.EqualFunc(got, in, sameEntry) {
		t.Fatalf("log: %+v", got)
	}
}

// TestTaggedRecordTooShort: a tagged record whose payload cannot hold the
// tag is refused, not read past its end.
func TestTaggedRecordTooShort(t *testing.T) {
	rec := appendTaggedRecord(nil, recPutTagged, 1, 1, 0, Tag{Client: 1, Seq: 1}, nil, nil)
	p := rec[recHeader:]
	if _, ok := decodePayload(p, crc32.Checksum(p, castagnoli)); !ok {
		t.Fatal("a tagged record with an empty key does not decode")
	}
	short := append([]byte(nil), p[:recFixed+recTagLen-1]...)
	if _, ok := decodePayload(short, crc32.Checksum(short, castagnoli)); ok {
		t.Fatal("a tagged record without room for its tag decodes")
	}
}
