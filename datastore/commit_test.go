package datastore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

type outcome struct {
	seq uint64
	err error
}

// collector records the outcomes the committer hands to async callers.
type collector struct {
	mu   sync.Mutex
	got  []outcome
	done chan struct{}
	want int
}

func newCollector(want int) *collector {
	return &collector{done: make(chan struct{}), want: want}
}

func (c *collector) callback(seq uint64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, outcome{seq, err})
	if len(c.got) == c.want {
		close(c.done)
	}
}

func (c *collector) wait(t *testing.T) []outcome {
	t.Helper()
	select {
	case <-c.done:
	case <-testCtx(t).Done():
		t.Fatal("callbacks did not arrive")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got
}

// Queued from one goroutine, asynchronous writes get sequence numbers in
// the order made, each callback comes once, and the data is durable and
// readable afterwards.
func TestWriteAsyncOrder(t *testing.T) {
	s, path := newStore(t, Options{})
	ctx := testCtx(t)
	const n = 200
	c := newCollector(n)
	for i := range n {
		m := []Mutation{{Slot: i % 16, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprint(i))}}
		if err := s.WriteAsync(ctx, m, c.callback); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	got := c.wait(t)
	for i, o := range got {
		if o.err != nil || o.seq != uint64(i+1) {
			t.Fatalf("callback %d: seq %d err %v; want seq %d", i, o.seq, o.err, i+1)
		}
	}
	if d := s.DurableSeq(); d != n {
		t.Fatalf("durable seq %d, want %d", d, n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path, Options{})
	for i := range n {
		if v := mustGet(t, s, i%16, fmt.Sprintf("k%d", i)); v != fmt.Sprint(i) {
			t.Fatalf("k%d = %q after reopen", i, v)
		}
	}
}

// Invalid input is refused at once, without a callback; a store closed
// before the committer took the request reports ErrClosed through it.
func TestWriteAsyncErrors(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	never := func(uint64, error) { t.Error("callback for a refused write") }
	if err := s.WriteAsync(ctx, nil, never); err == nil {
		t.Fatal("empty write accepted")
	}
	if err := s.WriteAsync(ctx, []Mutation{{Slot: 99, Key: []byte("k")}}, never); !errors.Is(err, ErrBadSlot) {
		t.Fatalf("bad slot: %v", err)
	}
	if err := s.ApplyLogAsync(ctx, []LogEntry{{Seq: 5, Slot: 1, Key: []byte("k")}, {Seq: 7, Slot: 1, Key: []byte("k")}}, never); !errors.Is(err, ErrLogGap) {
		t.Fatalf("gap inside a call: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAsync(ctx, []Mutation{{Slot: 1, Key: []byte("k")}}, never); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// A follower queues the next entries while earlier ones are being synced;
// an entry that does not continue the log fails in its callback only, and
// what came before it stays.
func TestApplyLogAsyncPipelined(t *testing.T) {
	primary, _ := newStore(t, Options{NoSync: true})
	follower, _ := newStore(t, Options{})
	ctx := testCtx(t)
	for i := range 100 {
		mustPut(t, primary, i%16, fmt.Sprintf("k%d", i), fmt.Sprint(i))
	}
	entries, err := primary.ReadLog(1, Limit{})
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector(11)
	for from := 0; from < len(entries); from += 10 {
		if err := follower.ApplyLogAsync(ctx, entries[from:from+10], c.callback); err != nil {
			t.Fatalf("queue entries from %d: %v", from, err)
		}
	}
	// Seq 100 again: queued fine, refused by the committer.
	if err := follower.ApplyLogAsync(ctx, entries[99:], c.callback); err != nil {
		t.Fatal(err)
	}
	got := c.wait(t)
	for i, o := range got[:10] {
		if o.err != nil || o.seq != uint64(10*(i+1)) {
			t.Fatalf("batch %d: seq %d err %v", i, o.seq, o.err)
		}
	}
	if last := got[10]; !errors.Is(last.err, ErrLogGap) {
		t.Fatalf("repeated entry: %v", last.err)
	}
	if follower.DurableSeq() != 100 || mustGet(t, follower, 99%16, "k99") != "99" {
		t.Fatalf("follower durable at %d", follower.DurableSeq())
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

func TestCommittedVisibility(t *testing.T) {
	s, _ := newManual(t, Options{NoSync: true})
	seq := mustPut(t, s, 1, "k", "v1")
	if _, err := s.Get(1, []byte("k")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("uncommitted key visible: %v", err)
	}
	if s.DurableSeq() != seq || s.CommittedSeq() != 0 {
		t.Fatalf("durable %d committed %d", s.DurableSeq(), s.CommittedSeq())
	}
	s.SetCommitted(seq)
	if got := mustGet(t, s, 1, "k"); got != "v1" {
		t.Fatalf("committed key = %q", got)
	}
	seq2 := mustPut(t, s, 1, "k", "v2")
	if got := mustGet(t, s, 1, "k"); got != "v1" {
		t.Fatalf("uncommitted overwrite visible: %q", got)
	}
	// A watermark beyond the durable seq is remembered and followed.
	s.SetCommitted(seq2 + 5)
	if s.CommittedSeq() != seq2 {
		t.Fatalf("committed %d, want durable %d", s.CommittedSeq(), seq2)
	}
	seq3 := mustPut(t, s, 1, "k", "v3")
	if s.CommittedSeq() != seq3 || mustGet(t, s, 1, "k") != "v3" {
		t.Fatalf("committed %d after write %d", s.CommittedSeq(), seq3)
	}
	s.SetCommitted(1) // never goes back
	if s.CommittedSeq() != seq3 {
		t.Fatalf("committed went back to %d", s.CommittedSeq())
	}
	waitApplied(t, s)
	if kvs, err := s.Scan(testCtx(t), []int{1}, nil, nil, Limit{}); err != nil || len(kvs) != 1 || string(kvs[0].Value) != "v3" {
		t.Fatalf("scan = %v, %v", kvs, err)
	}
}

func TestBackpressure(t *testing.T) {
	s, _ := newManual(t, Options{NoSync: true, overlayLimit: 1000})
	ctx := testCtx(t)
	seq := mustPut(t, s, 0, "a", string(make([]byte, 2000)))
	// The overlay is over its limit and nothing is committed: writes wait.
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.Write(wctx, []Mutation{{Slot: 0, Key: []byte("b")}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write over the overlay limit: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Write(ctx, []Mutation{{Slot: 0, Key: []byte("c")}})
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	s.SetCommitted(seq) // the applier drains the overlay, the writer proceeds
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestFailStop(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	mustPut(t, s, 0, "a", "1")
	// Closing the log file under the committer makes its next write fail.
	if err := s.wal.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if _, err := s.Write(ctx, []Mutation{{Slot: 0, Key: []byte("b")}}); !errors.Is(err, ErrFailed) {
		t.Fatalf("write on a failed log: %v", err)
	}
	if _, err := s.Write(ctx, []Mutation{{Slot: 0, Key: []byte("c")}}); !errors.Is(err, ErrFailed) {
		t.Fatalf("later write: %v", err)
	}
	if err := s.SetEpoch(ctx, 9); !errors.Is(err, ErrFailed) {
		t.Fatalf("set epoch: %v", err)
	}
	if got := mustGet(t, s, 0, "a"); got != "1" {
		t.Fatalf("reads still work: %q", got)
	}
	s.wal = nil // already closed; Close must not fail on it
}
