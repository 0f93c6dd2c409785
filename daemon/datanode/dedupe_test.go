package datanode

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/wire"
)

func taggedPut(key, value string, client, seq uint64) *wire.Request {
	r := put(key, value)
	r.ClientId, r.ClientSeq = client, seq
	return r
}

func mustOK(t *testing.T, what string, rs ...*wire.Response) {
	t.Helper()
	for _, r := range rs {
		if r.Code != wire.Code_OK {
			t.Fatalf("%s: %v %s", what, r.Code, r.Message)
		}
	}
}

// A write retried on the new primary after a failover, when its first
// attempt had reached the log and another client has written the key since,
// is answered OK without a second log entry: the key keeps the other
// client's value (no A, B, A).
func TestRetryAfterFailoverAnswersFromTheLog(t *testing.T) {
	c, a, b := startPair(t)
	mustOK(t, "first attempt", call(t, a.Addr(), patience, taggedPut("k", "A", 42, 1))[0])
	seq := a.store().LastSeq()
	eventually(t, "b holds the first attempt", func() bool { return b.store().DurableSeq() >= seq })

	s := &service{n: a}
	if _, err := s.Handover(context.Background(), &wire.HandoverRequest{Epoch: c.group().Epoch, To: b.ID()}); err != nil {
		t.Fatal(err)
	}
	c.waitServing(b)
	mustOK(t, "another client's put", call(t, b.Addr(), patience, put("k", "B"))[0])
	last := b.store().LastSeq()

	mustOK(t, "retry on the new primary", call(t, b.Addr(), patience, taggedPut("k", "A", 42, 1))[0])
	if got := b.store().LastSeq(); got != last {
		t.Fatalf("the retry was appended again: log end %d → %d", last, got)
	}
	if r := call(t, b.Addr(), patience, get("k"))[0]; string(r.Value) != "B" {
		t.Fatalf("k = %q after the retry, want the later put's B", r.Value)
	}
	// A new write of the same client is written as usual.
	mustOK(t, "next write", call(t, b.Addr(), patience, taggedPut("k", "C", 42, 2))[0])
	if got := b.store().LastSeq(); got != last+1 {
		t.Fatalf("the client's next write: log end %d → %d", last, got)
	}
}

// Attempts with the same tag in flight at once, in one batch or on two
// streams, append one entry and are all answered OK; untagged writes are
// written every time, as before.
func TestConcurrentSameTagAppendsOnce(t *testing.T) {
	c := newTestCluster(t)
	a := c.startNode(nodeDir(t, "a"), nil, nil)
	c.waitServing(a)
	last := a.store().LastSeq()
	mustOK(t, "one batch", call(t, a.Addr(), patience, taggedPut("k", "v", 7, 1), taggedPut("k", "v", 7, 1), taggedPut("k", "v", 7, 1))...)
	if got := a.store().LastSeq(); got != last+1 {
		t.Fatalf("three attempts in one batch: log end %d → %d, want one entry", last, got)
	}

	last = a.store().LastSeq()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustOK(t, "concurrent stream", call(t, a.Addr(), patience, taggedPut("k", "w", 7, 2))[0])
		}()
	}
	wg.Wait()
	if got := a.store().LastSeq(); got != last+1 {
		t.Fatalf("four concurrent attempts: log end %d → %d, want one entry", last, got)
	}

	last = a.store().LastSeq()
	mustOK(t, "untagged", call(t, a.Addr(), patience, put("k", "u"), put("k", "u"))...)
	if got := a.store().LastSeq(); got != last+2 {
		t.Fatalf("two untagged puts: log end %d → %d, want two entries", last, got)
	}
}

// A restarted node knows the tags of its log: a retry after the restart is
// not written again.
func TestRestartedPrimaryKnowsItsTags(t *testing.T) {
	c := newTestCluster(t)
	dir := nodeDir(t, "a")
	a := c.startNode(dir, nil, nil)
	c.waitServing(a)
	mustOK(t, "first attempt", call(t, a.Addr(), patience, taggedPut("k", "A", 9, 1))[0])
	a.Close()
	a = c.startNode(dir, nil, nil)
	c.waitGroup("a leads again", func(g *coord.Group) bool { return g.Primary == a.ID() })
	c.waitServing(a) // writes an untagged put
	last := a.store().LastSeq()
	mustOK(t, "retry after the restart", call(t, a.Addr(), patience, taggedPut("k", "A", 9, 1))[0])
	if got := a.store().LastSeq(); got != last {
		t.Fatalf("the retry was appended again: log end %d → %d", last, got)
	}
}

// A tag whose entry is no longer at its seq (a truncation removed it) is
// not believed: the write is claimed to be written again.
func TestDedupeChecksHitsAgainstTheLog(t *testing.T) {
	d := newDedupe()
	tag := datastore.Tag{Client: 1, Seq: 1}
	d.appended(5, []datastore.Tag{tag})
	if seq, first := d.claim(tag, func(datastore.Tag, uint64) bool { return true }); seq != 5 || first != nil {
		t.Fatalf("claim of a logged tag: seq %d, in flight %v", seq, first)
	}
	if seq, first := d.claim(tag, func(datastore.Tag, uint64) bool { return false }); seq != 0 || first != nil {
		t.Fatalf("claim of a tag whose entry is gone: seq %d, in flight %v", seq, first)
	}
	// Now claimed: another attempt joins it and learns its outcome.
	_, first := d.claim(tag, nil)
	if first == nil {
		t.Fatal("a claimed tag is not in flight")
	}
	got := make(chan uint64, 1)
	d.join(first, func(seq uint64, err error) { got <- seq })
	d.written([]datastore.Mutation{{}, {Tag: tag}}, 8, nil)
	if seq := <-got; seq != 8 {
		t.Fatalf("the joined attempt learned seq %d, want 8", seq)
	}
}

// The table keeps every tag of the window, at least dedupeMin of any age,
// and never more than dedupeMax.
func TestDedupePrunesToItsWindow(t *testing.T) {
	d := newDedupe()
	now := dedupeWindow + time.Minute
	old := now - dedupeWindow - time.Second
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range uint64(dedupeMin + 100) {
		d.addLocked(datastore.Tag{Client: 1, Seq: i + 1}, i+1, old)
	}
	d.pruneLocked(now)
	if n := d.tags.len(); n != dedupeMin {
		t.Fatalf("%d old tags kept, want %d", n, dedupeMin)
	}
	if _, ok := d.tags.get(datastore.Tag{Client: 1, Seq: dedupeMin + 100}); !ok {
		t.Fatal("the newest tag was dropped")
	}
	if _, ok := d.tags.get(datastore.Tag{Client: 1, Seq: 100}); ok {
		t.Fatal("a tag beyond the window was kept")
	}
	for i := range uint64(dedupeMax + 10) {
		d.addLocked(datastore.Tag{Client: 2, Seq: i + 1}, i+1, now)
	}
	d.pruneLocked(now)
	if n := d.tags.len(); n != dedupeMax {
		t.Fatalf("%d tags kept, want at most %d", n, dedupeMax)
	}
	if _, ok := d.tags.get(datastore.Tag{Client: 2, Seq: 10}); ok {
		t.Fatal("a tag beyond dedupeMax was kept")
	}
	if seq, ok := d.tags.get(datastore.Tag{Client: 2, Seq: 11}); !ok || seq != 11 {
		t.Fatalf("the oldest tag of the window: seq %d, %v", seq, ok)
	}
}

// rebuild takes the tags Open met in the log; until its fill is done the
// table is locked, so a tagged write waits for it and still finds its
// first attempt.
func TestDedupeRebuildsFromTheLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	opts := datastore.Options{Slots: 4, AutoCommit: true, NoSync: true}
	store, err := datastore.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	tag := datastore.Tag{Client: 3, Seq: 3}
	ctx := context.Background()
	if _, err := store.Write(ctx, []datastore.Mutation{{Slot: 1, Key: []byte("a")}, {Slot: 1, Key: []byte("b"), Tag: tag}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if store, err = datastore.Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	d := newDedupe()
	fill := d.rebuild(store, testLogger(t))
	if d.mu.TryLock() {
		t.Fatal("the table is open before its fill")
	}
	got := make(chan uint64, 1)
	go func() {
		seq, _ := d.claim(tag, func(datastore.Tag, uint64) bool { return true })
		got <- seq
	}()
	fill()
	if seq := <-got; seq != 2 {
		t.Fatalf("rebuilt table has the tag at seq %d, want 2", seq)
	}
}
