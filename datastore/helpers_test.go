package datastore

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

// testLogger sends the store's log lines to the test log.
func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(string(p))
	return len(p), nil
}

// openStore opens path with opts (AutoCommit, and a test logger unless
// set) and closes it when the test ends.
func openStore(tb testing.TB, path string, opts Options) *Store {
	tb.Helper()
	opts.AutoCommit = true
	return openManual(tb, path, opts)
}

// openManual is openStore without forcing AutoCommit.
func openManual(tb testing.TB, path string, opts Options) *Store {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(tb)
	}
	s, err := Open(path, opts)
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close %s: %v", path, err)
		}
	})
	return s
}

// newStore opens a fresh store with 16 slots and AutoCommit in a temporary
// directory.
func newStore(tb testing.TB, opts Options) (*Store, string) {
	tb.Helper()
	if opts.Slots == 0 {
		opts.Slots = 16
	}
	path := filepath.Join(tb.TempDir(), "data", "store")
	return openStore(tb, path, opts), path
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func mustPut(tb testing.TB, s *Store, slot int, key, value string) uint64 {
	tb.Helper()
	seq, err := s.Write(testCtx(tb), []Mutation{{Slot: slot, Key: []byte(key), Value: []byte(value)}})
	if err != nil {
		tb.Fatalf("put slot %d key %q: %v", slot, key, err)
	}
	return seq
}

func mustGet(tb testing.TB, s *Store, slot int, key string) string {
	tb.Helper()
	v, err := s.Get(slot, []byte(key))
	if err != nil {
		tb.Fatalf("get slot %d key %q: %v", slot, key, err)
	}
	return string(v)
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// waitApplied waits until the applier has applied everything committed.
func waitApplied(tb testing.TB, s *Store) {
	tb.Helper()
	want := s.CommittedSeq()
	if err := s.waitApplied(testCtx(tb), want); err != nil {
		tb.Fatalf("wait for applied seq %d: %v", want, err)
	}
}

// dump returns every key/value of every slot, for comparing two stores.
func dump(t testing.TB, s *Store) []KV {
	t.Helper()
	slots := make([]int, s.Slots())
	for i := range slots {
		slots[i] = i
	}
	kvs, err := s.Scan(testCtx(t), slots, nil, nil, Limit{})
	if err != nil {
		t.Fatal(err)
	}
	return kvs
}

func newManual(t *testing.T, opts Options) (*Store, string) {
	t.Helper()
	if opts.Slots == 0 {
		opts.Slots = 16
	}
	dir := filepath.Join(t.TempDir(), "s")
	return openManual(t, dir, opts), dir
}
