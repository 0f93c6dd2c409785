package datastore

import (
	"errors"
	"fmt"
	"sync"
	"testing"
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
	entries, err := primary.ReadLog(1, 0)
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
