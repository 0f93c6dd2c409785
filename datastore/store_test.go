package datastore

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestWriteGetDelete(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	if got := mustPut(t, s, 3, "a", "1"); got != 1 {
		t.Fatalf("first seq = %d, want 1", got)
	}
	seq, err := s.Write(ctx, []Mutation{
		{Slot: 3, Key: []byte("b"), Value: []byte("2")},
		{Slot: 4, Key: []byte("a"), Value: nil},
		{Slot: 3, Key: []byte("a"), Delete: true},
	})
	if err != nil || seq != 4 {
		t.Fatalf("write = %d, %v; want 4, nil", seq, err)
	}
	if _, err := s.Get(3, []byte("a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted key: %v, want ErrNotFound", err)
	}
	if v, err := s.Get(4, []byte("a")); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("get empty value = %q (nil %v), %v", v, v == nil, err)
	}
	if got := mustGet(t, s, 3, "b"); got != "2" {
		t.Fatalf("get b = %q", got)
	}
	entries, err := s.ReadLog(1, Limit{})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 || !entries[3].Delete || entries[3].Slot != 3 || string(entries[3].Key) != "a" {
		t.Fatalf("log = %+v", entries)
	}
	if seq, err := s.Write(ctx, nil); err != nil || seq != 4 {
		t.Fatalf("empty write = %d, %v", seq, err)
	}
}

func TestReopenKeepsState(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	s, err := Open(path, Options{Slots: 8, NoSync: true, AutoCommit: true})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, 1, "a", "1")
	mustPut(t, s, 1, "b", "2")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := s.Write(testCtx(t), []Mutation{{Slot: 1, Key: []byte("c")}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if _, err := s.Get(1, []byte("a")); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after close: %v", err)
	}

	if _, err := Open(path, Options{Slots: 16}); !errors.Is(err, ErrSlotsMismatch) {
		t.Fatalf("reopen with other slot count: %v", err)
	}
	s = openStore(t, path, Options{})
	if s.Slots() != 8 || s.LastSeq() != 2 || s.MaxKeySize() != 4096 || s.MaxValueSize() != 4<<20 {
		t.Fatalf("reopened: slots %d last seq %d limits %d/%d", s.Slots(), s.LastSeq(), s.MaxKeySize(), s.MaxValueSize())
	}
	if got := mustPut(t, s, 1, "c", "3"); got != 3 {
		t.Fatalf("seq after reopen = %d, want 3", got)
	}
	if got := mustGet(t, s, 1, "a"); got != "1" {
		t.Fatalf("a = %q", got)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "new.db"), Options{}); !errors.Is(err, ErrBadOptions) {
		t.Fatalf("new store without slots: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "x.db"), Options{Slots: 1 << 17}); !errors.Is(err, ErrBadOptions) {
		t.Fatalf("too many slots: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "y.db"), Options{Slots: 4, MaxKeySize: -1}); !errors.Is(err, ErrBadOptions) {
		t.Fatalf("negative key size: %v", err)
	}
}

func TestOpenLocked(t *testing.T) {
	old := lockTimeout
	lockTimeout = 100 * time.Millisecond
	t.Cleanup(func() { lockTimeout = old })
	_, path := newStore(t, Options{NoSync: true})
	start := time.Now()
	_, err := Open(path, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	if want := "datastore: " + path + " is locked by another process"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	t.Logf("second open gave up after %v", time.Since(start))
}

// Writers racing Close either succeed, and are then durable, or get ErrClosed.
func TestCloseDuringWrites(t *testing.T) {
	s, path := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked [][]byte
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				key := fmt.Appendf(nil, "g%d-%d", g, i)
				_, err := s.Write(ctx, []Mutation{{Slot: g, Key: key, Value: key}})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("write: %v", err)
					return
				}
				mu.Lock()
				acked = append(acked, key)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = openStore(t, path, Options{})
	if uint64(len(acked)) != s.LastSeq() {
		t.Fatalf("%d writes acknowledged, LastSeq %d", len(acked), s.LastSeq())
	}
	for _, k := range acked {
		slot := 0
		fmt.Sscanf(string(k), "g%d-", &slot)
		if _, err := s.Get(slot, k); err != nil {
			t.Fatalf("acknowledged key %s: %v", k, err)
		}
	}
}
