// Package storetest is the conformance suite every backup.Store passes:
// put, open, list and delete, overwrite, large objects streamed in bounded
// memory, missing objects, listing by prefix, invalid names, and a Put that
// fails or is cancelled midway leaving nothing under its name. Run it from
// the store's tests with a function that returns a new, empty store:
//
//	storetest.Run(t, func(t *testing.T) backup.Store { return openDir(t, t.TempDir()) })
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/backup"
)

// LargeSize is the size of the large object the suite streams. Stores that
// buffer parts should use parts well below it so it takes several.
const LargeSize = 40 << 20

// maxHeapGrowth bounds the live heap while a large object is written or
// read: a part buffer or two, never the object.
const maxHeapGrowth = 20 << 20

// Run runs the suite. newStore returns a new, empty store each time.
func Run(t *testing.T, newStore func(t *testing.T) backup.Store) {
	// The large-object tests measure the heap, so they run before the
	// parallel tests start and allocate.
	t.Run("LargeStreamed", func(t *testing.T) { testLargeStreamed(t, newStore(t)) })
	tests := []struct {
		name string
		fn   func(*testing.T, backup.Store)
	}{
		{"PutOpenListDelete", testPutOpenListDelete},
		{"Overwrite", testOverwrite},
		{"Empty", testEmpty},
		{"Missing", testMissing},
		{"ListPrefix", testListPrefix},
		{"InvalidNames", testInvalidNames},
		{"FailedPut", testFailedPut},
		{"CancelledPut", testCancelledPut},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, s backup.Store, name, data string) {
	t.Helper()
	if err := s.Put(ctxFor(t), name, strings.NewReader(data)); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}

func get(t *testing.T, s backup.Store, name string) string {
	t.Helper()
	rc, err := s.Open(ctxFor(t), name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(data)
}

func names(t *testing.T, s backup.Store, prefix string) string {
	t.Helper()
	objs, err := s.List(ctxFor(t), prefix)
	if err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, o.Name)
	}
	return strings.Join(out, " ")
}

func wantNotFound(t *testing.T, s backup.Store, name string) {
	t.Helper()
	rc, err := s.Open(ctxFor(t), name)
	if err == nil {
		rc.Close()
		t.Fatalf("open %s: found, want no such object", name)
	}
	if !errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("open %s: %v, want ErrNotFound", name, err)
	}
}

func testPutOpenListDelete(t *testing.T, s backup.Store) {
	ctx := ctxFor(t)
	before := time.Now().Add(-time.Minute)
	put(t, s, "20261202T143000Z-a1b2c3/slot-0001.tyb", "one")
	put(t, s, "20261202T143000Z-a1b2c3/manifest.json", "{}")
	if got := get(t, s, "20261202T143000Z-a1b2c3/slot-0001.tyb"); got != "one" {
		t.Fatalf("read back %q, want %q", got, "one")
	}
	objs, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || objs[0].Name != "20261202T143000Z-a1b2c3/manifest.json" || objs[1].Name != "20261202T143000Z-a1b2c3/slot-0001.tyb" {
		t.Fatalf("list: %+v", objs)
	}
	if objs[1].Size != 3 || objs[0].Size != 2 {
		t.Fatalf("sizes %d, %d, want 3, 2", objs[1].Size, objs[0].Size)
	}
	if objs[1].ModTime.Before(before) || objs[1].ModTime.After(time.Now().Add(time.Minute)) {
		t.Fatalf("mod time %v, want about now", objs[1].ModTime)
	}
	if err := s.Delete(ctx, "20261202T143000Z-a1b2c3/slot-0001.tyb"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s, "20261202T143000Z-a1b2c3/slot-0001.tyb")
	if got := names(t, s, ""); got != "20261202T143000Z-a1b2c3/manifest.json" {
		t.Fatalf("after delete: %q", got)
	}
	if err := s.Delete(ctx, "20261202T143000Z-a1b2c3/manifest.json"); err != nil {
		t.Fatal(err)
	}
	if got := names(t, s, ""); got != "" {
		t.Fatalf("after deleting everything: %q", got)
	}
	// Deleting what is not there is not an error.
	if err := s.Delete(ctx, "20261202T143000Z-a1b2c3/manifest.json"); err != nil {
		t.Fatalf("delete a missing object: %v", err)
	}
}

func testOverwrite(t *testing.T, s backup.Store) {
	put(t, s, "x/o", "first, longer")
	put(t, s, "x/o", "second")
	if got := get(t, s, "x/o"); got != "second" {
		t.Fatalf("after overwrite %q", got)
	}
	if got := names(t, s, ""); got != "x/o" {
		t.Fatalf("list after overwrite %q", got)
	}
}

func testEmpty(t *testing.T, s backup.Store) {
	put(t, s, "empty", "")
	if got := get(t, s, "empty"); got != "" {
		t.Fatalf("read %q", got)
	}
	objs, err := s.List(ctxFor(t), "empty")
	if err != nil || len(objs) != 1 || objs[0].Size != 0 {
		t.Fatalf("list: %+v, %v", objs, err)
	}
}

func testMissing(t *testing.T, s backup.Store) {
	wantNotFound(t, s, "nothing/here")
	put(t, s, "dir/obj", "x")
	wantNotFound(t, s, "dir") // a "directory" is not an object
	_, err := s.Open(ctxFor(t), "dir/missing.tyb")
	msg := err.Error()
	if !strings.Contains(msg, s.String()) || !strings.Contains(msg, "open dir/missing.tyb") || strings.Contains(msg, "\n") {
		t.Fatalf("error %q: want one line naming the store %s and the object", msg, s)
	}
}

func testListPrefix(t *testing.T, s backup.Store) {
	for _, n := range []string{"a/1", "a/2", "ab/1", "b/x/y", "b/x/z", "c"} {
		put(t, s, n, n)
	}
	for prefix, want := range map[string]string{
		"":      "a/1 a/2 ab/1 b/x/y b/x/z c",
		"a/":    "a/1 a/2",
		"a":     "a/1 a/2 ab/1",
		"b/x/":  "b/x/y b/x/z",
		"b/x/y": "b/x/y",
		"b/":    "b/x/y b/x/z",
		"c":     "c",
		"zzz":   "",
		"a/3":   "",
		"q/r/":  "",
	} {
		if got := names(t, s, prefix); got != want {
			t.Errorf("list %q = %q, want %q", prefix, got, want)
		}
	}
}

func testInvalidNames(t *testing.T, s backup.Store) {
	ctx := ctxFor(t)
	for _, n := range []string{"", "/abs", "a//b", "a/", "../x", "a/../b", "./a", ".hidden", "a/.tmp"} {
		if err := s.Put(ctx, n, strings.NewReader("x")); err == nil {
			t.Errorf("put %q: no error", n)
		}
		if _, err := s.Open(ctx, n); err == nil || errors.Is(err, backup.ErrNotFound) {
			t.Errorf("open %q: %v, want an invalid name error", n, err)
		}
	}
	if got := names(t, s, ""); got != "" {
		t.Fatalf("invalid puts left %q", got)
	}
}

// failingReader yields n bytes of data, then fails.
type failingReader struct {
	r   io.Reader
	n   int64
	err error
}

var errSource = errors.New("the source failed")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

func testFailedPut(t *testing.T, s backup.Store) {
	ctx := ctxFor(t)
	// Failing early (in the first part) and late (after whole parts went up).
	for _, at := range []int64{10, 12 << 20} {
		name := fmt.Sprintf("fail/at-%d", at)
		err := s.Put(ctx, name, &failingReader{r: newSource(1, at+1), n: at, err: errSource})
		if !errors.Is(err, errSource) {
			t.Fatalf("put failing at %d: %v, want the source's error", at, err)
		}
		if got := names(t, s, "fail/"); got != "" {
			t.Fatalf("a failed put lists %q", got)
		}
		wantNotFound(t, s, name)
	}
	// A failed overwrite keeps the object that was there.
	put(t, s, "fail/kept", "old")
	err := s.Put(ctx, "fail/kept", &failingReader{r: newSource(2, 12<<20), n: 11 << 20, err: errSource})
	if !errors.Is(err, errSource) {
		t.Fatalf("put: %v, want the source's error", err)
	}
	if got := get(t, s, "fail/kept"); got != "old" {
		t.Fatalf("a failed overwrite left %q", got)
	}
	if got := names(t, s, "fail/"); got != "fail/kept" {
		t.Fatalf("list after a failed overwrite %q", got)
	}
}

func testCancelledPut(t *testing.T, s backup.Store) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	src := newSource(3, 32<<20)
	src.after, src.do = 7<<20, cancel
	if err := s.Put(ctx, "cancel/obj", src); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled put: %v, want context.Canceled", err)
	}
	if got := names(t, s, ""); got != "" {
		t.Fatalf("a cancelled put lists %q", got)
	}
}

func testLargeStreamed(t *testing.T, s backup.Store) {
	ctx := ctxFor(t)
	src := newSource(4, LargeSize)
	src.sample = true
	base := liveHeap()
	if err := s.Put(ctx, "large/obj", src); err != nil {
		t.Fatal(err)
	}
	grew := int64(src.maxHeap) - int64(base)
	t.Logf("the live heap grew by at most %.1f MiB", float64(grew)/(1<<20))
	if grew > maxHeapGrowth {
		t.Fatalf("the heap grew by %d MiB putting a %d MiB object: the store buffers it", grew>>20, LargeSize>>20)
	}
	objs, err := s.List(ctx, "large/")
	if err != nil || len(objs) != 1 || objs[0].Size != LargeSize {
		t.Fatalf("list: %+v, %v", objs, err)
	}
	rc, err := s.Open(ctx, "large/obj")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil || n != LargeSize {
		t.Fatalf("read %d bytes, %v; want %d", n, err, LargeSize)
	}
	want := sha256.New()
	io.Copy(want, newSource(4, LargeSize))
	if !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Fatal("the large object read back differs from what was put")
	}
}

// source yields size pseudo-random bytes from seed, in small reads. With
// sample set it records the largest live heap every 4 MiB; with do set it
// calls do once after `after` bytes.
type source struct {
	rnd     *rand.ChaCha8
	left    int64
	read    int64
	sample  bool
	maxHeap uint64
	after   int64
	do      func()
}

func newSource(seed byte, size int64) *source {
	return &source{rnd: rand.NewChaCha8([32]byte{seed}), left: size}
}

func (s *source) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	if len(p) > 64<<10 {
		p = p[:64<<10]
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, _ := s.rnd.Read(p)
	s.left -= int64(n)
	before := s.read
	s.read += int64(n)
	if s.sample && before>>22 != s.read>>22 {
		s.maxHeap = max(s.maxHeap, liveHeap())
	}
	if s.do != nil && s.read >= s.after {
		s.do()
		s.do = nil
	}
	return n, nil
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
