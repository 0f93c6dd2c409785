package datastore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
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
	entries, err := s.ReadLog(1, 0)
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

func TestValidation(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true, MaxValueSize: 100})
	ctx := testCtx(t)
	mustPut(t, s, 0, "x", "y")
	before := s.LastSeq()
	cases := []struct {
		name string
		muts []Mutation
		want error
		says string
	}{
		{"empty key", []Mutation{{Slot: 1, Key: nil, Value: []byte("v")}}, ErrEmptyKey, "mutation 0"},
		{"key too large", []Mutation{{Slot: 1, Key: make([]byte, 4097)}}, ErrKeyTooLarge, "4097"},
		{"value too large", []Mutation{{Slot: 1, Key: []byte("k"), Value: make([]byte, 101)}}, ErrValueTooLarge, "101"},
		{"negative slot", []Mutation{{Slot: -1, Key: []byte("k")}}, ErrBadSlot, "slot -1"},
		{"slot too high", []Mutation{{Slot: 16, Key: []byte("k")}}, ErrBadSlot, "slot 16"},
		{"second of batch", []Mutation{{Slot: 1, Key: []byte("ok")}, {Slot: 1, Key: nil}}, ErrEmptyKey, "mutation 1"},
	}
	for _, c := range cases {
		_, err := s.Write(ctx, c.muts)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: err = %v, want %v mentioning %q", c.name, err, c.want, c.says)
		}
	}
	if s.LastSeq() != before {
		t.Fatalf("LastSeq moved from %d to %d after refused writes", before, s.LastSeq())
	}
	if _, err := s.Get(1, []byte("ok")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("valid half of a refused batch was written: %v", err)
	}
	if err := s.Validate(make([]byte, 4096), make([]byte, 100)); err != nil {
		t.Fatalf("Validate at the limits: %v", err)
	}
	if err := s.Validate([]byte("k"), make([]byte, 101)); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("Validate large value: %v", err)
	}
	// Deletes carry no value, so the value limit does not apply.
	if _, err := s.Write(ctx, []Mutation{{Slot: 0, Key: []byte("x"), Value: make([]byte, 101), Delete: true}}); err != nil {
		t.Fatalf("delete with ignored value: %v", err)
	}

	// Arbitrary bytes are fine, including NUL and 0xff, and the largest key.
	keys := [][]byte{{0x00}, {0xff, 0xff}, {0x00, 'a', 0xff}, bytes.Repeat([]byte{0xff}, 4096)}
	for i, k := range keys {
		if _, err := s.Write(ctx, []Mutation{{Slot: 2, Key: k, Value: []byte{byte(i)}}}); err != nil {
			t.Fatalf("write key %x: %v", k, err)
		}
	}
	for i, k := range keys {
		v, err := s.Get(2, k)
		if err != nil || !bytes.Equal(v, []byte{byte(i)}) {
			t.Fatalf("get key %x = %v, %v", k, v, err)
		}
	}
	if _, err := s.Get(2, nil); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("get empty key: %v", err)
	}
	if _, err := s.Get(99, []byte("k")); !errors.Is(err, ErrBadSlot) {
		t.Fatalf("get bad slot: %v", err)
	}
}

func TestGroupCommitConcurrent(t *testing.T) {
	s, _ := newStore(t, Options{Slots: 64})
	ctx := testCtx(t)
	const writers, perWriter = 64, 100
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				key := fmt.Sprintf("g%02d-%04d", g, i)
				if _, err := s.Write(ctx, []Mutation{{Slot: g, Key: []byte(key), Value: []byte(key)}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const total = writers * perWriter
	if s.LastSeq() != total {
		t.Fatalf("LastSeq = %d, want %d", s.LastSeq(), total)
	}
	refs := make([]KeyRef, 0, total)
	for g := range writers {
		for i := range perWriter {
			refs = append(refs, KeyRef{Slot: g, Key: fmt.Appendf(nil, "g%02d-%04d", g, i)})
		}
	}
	for i, r := range s.GetMany(refs) {
		if r.Err != nil || !bytes.Equal(r.Value, refs[i].Key) {
			t.Fatalf("key %s: %q, %v", refs[i].Key, r.Value, r.Err)
		}
	}
	commits := s.commits.Load()
	waitApplied(t, s)
	t.Logf("%d writes in %d commits (%.1f per commit)", total, commits, float64(total)/float64(commits))
	// With 64 writers each commit should carry many writes.
	if commits > total/4 {
		t.Fatalf("%d commits for %d writes: group commit is not batching", commits, total)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Keys != total || len(st.KeysPerSlot) != writers || st.KeysPerSlot[5] != perWriter || st.LastSeq != total ||
		st.FirstLogSeq != 1 || st.FileBytes <= 0 || st.Commits != commits {
		t.Fatalf("stats = %+v", st)
	}
}

func TestScan(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	var muts []Mutation
	var all []string
	for i := range 30 {
		k := fmt.Sprintf("key%02d", i)
		muts = append(muts, Mutation{Slot: i % 3, Key: []byte(k), Value: []byte("v" + k)})
		all = append(all, k)
	}
	muts = append(muts, Mutation{Slot: 5, Key: []byte("zzz"), Value: []byte("other slot")})
	if _, err := s.Write(ctx, muts); err != nil {
		t.Fatal(err)
	}
	keys := func(kvs []KV) []string {
		var out []string
		for _, kv := range kvs {
			if string(kv.Value) != "v"+string(kv.Key) {
				t.Fatalf("key %q has value %q", kv.Key, kv.Value)
			}
			out = append(out, string(kv.Key))
		}
		return out
	}
	cases := []struct {
		name       string
		slots      []int
		start, end string
		limit      int
		want       []string
	}{
		{"all", []int{2, 0, 1}, "", "", 0, all},
		{"duplicate slots", []int{0, 1, 2, 2, 0}, "", "", 0, all},
		{"start", []int{0, 1, 2}, "key25", "", 0, all[25:]},
		{"start between keys", []int{0, 1, 2}, "key245", "", 0, all[25:]},
		{"end", []int{0, 1, 2}, "", "key05", 0, all[:5]},
		{"range", []int{0, 1, 2}, "key10", "key20", 0, all[10:20]},
		{"limit", []int{0, 1, 2}, "key10", "", 4, all[10:14]},
		{"one slot", []int{1}, "", "key10", 0, []string{"key01", "key04", "key07"}},
		{"empty range", []int{0, 1, 2}, "key20", "key10", 0, nil},
		{"empty slot", []int{9}, "", "", 0, nil},
		{"no slots", nil, "", "", 0, nil},
	}
	for _, c := range cases {
		var start, end []byte
		if c.start != "" {
			start = []byte(c.start)
		}
		if c.end != "" {
			end = []byte(c.end)
		}
		got, err := s.Scan(ctx, c.slots, start, end, c.limit)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if g := keys(got); !slices.Equal(g, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, g, c.want)
		}
	}
	if _, err := s.Scan(ctx, []int{0, 16}, nil, nil, 0); !errors.Is(err, ErrBadSlot) {
		t.Fatalf("scan bad slot: %v", err)
	}
	// Deleted keys disappear from scans.
	if _, err := s.Write(ctx, []Mutation{{Slot: 0, Key: []byte("key00"), Delete: true}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Scan(ctx, []int{0, 1, 2}, nil, nil, 2)
	if err != nil || !slices.Equal(keys(got), all[1:3]) {
		t.Fatalf("scan after delete: %v, %v", keys(got), err)
	}
}

func TestGetMany(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	mustPut(t, s, 1, "a", "A")
	mustPut(t, s, 2, "b", "")
	res := s.GetMany([]KeyRef{
		{Slot: 1, Key: []byte("a")},
		{Slot: 2, Key: []byte("a")},
		{Slot: 2, Key: []byte("b")},
		{Slot: 17, Key: []byte("a")},
		{Slot: 1, Key: nil},
		{Slot: 7, Key: []byte("a")},
	})
	want := []struct {
		v   string
		err error
	}{{"A", nil}, {"", ErrNotFound}, {"", nil}, {"", ErrBadSlot}, {"", ErrEmptyKey}, {"", ErrNotFound}}
	for i, w := range want {
		if !errors.Is(res[i].Err, w.err) || string(res[i].Value) != w.v || (w.err == nil) != (res[i].Value != nil) {
			t.Errorf("ref %d: %q, %v; want %q, %v", i, res[i].Value, res[i].Err, w.v, w.err)
		}
	}
	// Values must not share capacity: appending to one may not clobber another.
	_ = append(res[0].Value, 'x')
	if string(res[0].Value) != "A" {
		t.Fatalf("value changed to %q", res[0].Value)
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

func TestWriteContext(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Write(ctx, []Mutation{{Slot: 0, Key: []byte("k")}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("write with cancelled ctx: %v", err)
	}
	if err := s.SetEpoch(ctx, 4); !errors.Is(err, context.Canceled) {
		t.Fatalf("set epoch with cancelled ctx: %v", err)
	}
	if s.LastSeq() != 0 || s.Epoch() != 0 {
		t.Fatalf("cancelled calls changed state: seq %d epoch %d", s.LastSeq(), s.Epoch())
	}
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

func TestSnapshot(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	for i := range 20 {
		mustPut(t, s, i%4, fmt.Sprintf("k%02d", i), fmt.Sprint(i))
	}
	var got []string
	seq, err := s.Snapshot(testCtx(t), []int{3, 1}, func(slot int, key, value []byte) error {
		got = append(got, fmt.Sprintf("%d/%s=%s", slot, key, value))
		return nil
	})
	if err != nil || seq != 20 {
		t.Fatalf("snapshot = %d, %v", seq, err)
	}
	want := []string{"3/k03=3", "3/k07=7", "3/k11=11", "3/k15=15", "3/k19=19", "1/k01=1", "1/k05=5", "1/k09=9", "1/k13=13", "1/k17=17"}
	if !slices.Equal(got, want) {
		t.Fatalf("snapshot saw %v", got)
	}
	stop := errors.New("stop")
	if _, err := s.Snapshot(testCtx(t), []int{0}, func(int, []byte, []byte) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("snapshot with failing fn: %v", err)
	}
}
