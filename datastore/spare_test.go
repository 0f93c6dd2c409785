package datastore

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSpareSegments: a segment that grows as it is written asks for a
// spare without pauses and gives way to it as soon as it is ready; a spare
// in use asks for a paced one and is followed by it; a reopened store finds
// every entry and goes on writing after the last record, not after the
// zeros. Spares do not outlive the store, and a crash's leftover spare is
// removed at open.
func TestSpareSegments(t *testing.T) {
	const segSize = 4096
	s, dir := newManual(t, Options{segmentSize: segSize})
	value := string(make([]byte, 200))
	i := 0
	put := func() {
		mustPut(t, s, i%16, fmt.Sprintf("k%04d", i), value)
		i++
	}
	activeSize := func() int64 {
		fi, err := os.Stat(s.segments[len(s.segments)-1].path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	const spareSize = segSize + segSize/64
	put()
	put() // the growing first segment, holding a record, asks for a spare
	if p := s.spares.pause(); p != 0 {
		t.Errorf("the spare for a growing segment pauses %s between chunks, want none", p)
	}
	waitFor(t, "a spare segment", func() bool { return len(s.spares.ready) == 1 })
	put() // and moves to it
	if len(s.segments) != 2 || activeSize() != spareSize || s.walGrows {
		t.Fatalf("%d segments, the active one %d bytes; want 2, the spare's %d bytes", len(s.segments), activeSize(), spareSize)
	}
	put() // the spare, holding a record, asks for the next one
	if p := s.spares.pause(); p != zeroPause {
		t.Errorf("the spare for a spare in use pauses %s between chunks, want %s", p, zeroPause)
	}
	waitFor(t, "a second spare segment", func() bool { return len(s.spares.ready) == 1 })
	for len(s.segments) < 3 {
		put()
	}
	if activeSize() != spareSize {
		t.Fatalf("third segment is %d bytes, want the spare's %d", activeSize(), spareSize)
	}
	put()
	last := s.LastSeq()
	s.SetCommitted(last)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, walDir, spareGlob)); len(left) != 0 {
		t.Fatalf("spares left after close: %v", left)
	}
	if err := os.WriteFile(filepath.Join(dir, walDir, "spare-1.tmp"), make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	s = openManual(t, dir, Options{segmentSize: segSize})
	if s.LastSeq() != last || s.walGrows {
		t.Fatalf("reopened at seq %d (want %d), active segment growing: %v", s.LastSeq(), last, s.walGrows)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, walDir, spareGlob)); len(left) != 0 {
		t.Fatalf("spares left after open: %v", left)
	}
	put()
	s.SetCommitted(last + 1)
	for j := range i {
		if got := mustGet(t, s, j%16, fmt.Sprintf("k%04d", j)); got != value {
			t.Fatalf("k%04d = %d bytes", j, len(got))
		}
	}
	entries, err := s.ReadLog(1, Limit{})
	if err != nil || uint64(len(entries)) != last+1 {
		t.Fatalf("log holds %d entries (%v), want %d", len(entries), err, last+1)
	}
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("no %s after 10s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSpareFailure: when a spare cannot be made (here its directory is
// gone) the preparer logs it and ignores requests for a while; no spare is
// offered, and closing does not wait out the pause.
func TestSpareFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sp, err := startSpares(dir, 4096, true, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	sp.request(false)
	waitFor(t, "the failed request to be taken", func() bool { return len(sp.want) == 0 })
	sp.request(false)
	if f := sp.take(filepath.Join(t.TempDir(), "x")); f != nil {
		t.Fatalf("a spare was offered: %s", f.Name())
	}
	sp.close()
}
