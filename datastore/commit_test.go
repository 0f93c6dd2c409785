package datastore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// heldSync holds the first n fdatasyncs, each until release lets one go
// (or releaseAll closes it); later ones pass.
type heldSync struct {
	mu      sync.Mutex
	left    int
	held    chan struct{} // one per sync held
	release chan struct{}
	once    sync.Once
}

func newHeldSync(n int) *heldSync {
	return &heldSync{left: n, held: make(chan struct{}, 16), release: make(chan struct{})}
}

// hold holds the next n fdatasyncs.
func (h *heldSync) hold(n int) {
	h.mu.Lock()
	h.left = n
	h.mu.Unlock()
}

// releaseAll lets every held and later fdatasync pass. A test registers
// it as a cleanup after its store's, so that a failure while a sync is
// held does not leave the store's Close waiting for it.
func (h *heldSync) releaseAll() { h.once.Do(func() { close(h.release) }) }

func (h *heldSync) beforeSync() {
	h.mu.Lock()
	hold := h.left > 0
	if hold {
		h.left--
	}
	h.mu.Unlock()
	if hold {
		h.held <- struct{}{}
		<-h.release
	}
}

// waitInFlight waits until n commits are in flight.
func waitInFlight(t *testing.T, s *Store, n int) {
	t.Helper()
	ctx := testCtx(t)
	for {
		s.mu.RLock()
		got := s.inFlight
		s.mu.RUnlock()
		if got == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d commits in flight, want %d", got, n)
		case <-time.After(time.Millisecond):
		}
	}
}

// commitMarks reads the commit records of the store's only segment, with
// the offset each commit starts at.
func commitMarks(t *testing.T, s *Store) (marks []commitMark, starts []int64) {
	t.Helper()
	s.mu.RLock()
	path := s.segments[len(s.segments)-1].path
	s.mu.RUnlock()
	recs := readLayout(t, path)
	start := int64(0)
	for _, r := range recs {
		if r.typ != recCommit {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m, _, ok := commitAt(b[r.off:], r.off)
		if !ok {
			t.Fatalf("commit record at %d does not decode", r.off)
		}
		marks, starts = append(marks, m), append(starts, start)
		start = r.end
	}
	return marks, starts
}

// While a commit's fdatasync runs, the committer writes the next one (its
// commit record saying that nothing was synced yet), ships it to ReadLog,
// and holds a third back; the writers are answered once their own
// fdatasync returned.
func TestTwoCommitsInFlight(t *testing.T) {
	h := newHeldSync(1)
	s, dir := newStore(t, Options{NoSync: true, hooks: hooks{beforeSync: h.beforeSync}})
	ctx := testCtx(t)
	put := func(key string) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := s.Write(ctx, []Mutation{{Slot: 1, Key: []byte(key), Value: []byte("v-" + key)}})
			done <- err
		}()
		return done
	}
	a := put("a")
	<-h.held
	b := put("b")
	if err := s.WaitLog(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if entries, err := s.ReadLog(2, Limit{}); err != nil || len(entries) != 1 || string(entries[0].Key) != "b" {
		t.Fatalf("second commit not readable while the first syncs: %v, %v", entries, err)
	}
	waitInFlight(t, s, 2)
	c := put("c")
	time.Sleep(50 * time.Millisecond)
	if s.LastSeq() != 2 || s.DurableSeq() != 0 {
		t.Fatalf("last %d durable %d: want a third commit held back and nothing durable", s.LastSeq(), s.DurableSeq())
	}
	select {
	case err := <-a:
		t.Fatalf("a answered before its fdatasync: %v", err)
	case err := <-b:
		t.Fatalf("b answered before its fdatasync: %v", err)
	default:
	}
	marks, starts := commitMarks(t, s)
	if len(marks) != 2 || marks[1].synced != starts[0] {
		t.Fatalf("commit records %+v: want the second to say nothing was synced", marks)
	}
	powerLossImage(t, s, span{starts[0], starts[1]})
	h.releaseAll()
	for _, ch := range []chan error{a, b, c} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if s.DurableSeq() != 3 {
		t.Fatalf("durable %d after the writes returned", s.DurableSeq())
	}
	marks, starts = commitMarks(t, s)
	if len(marks) != 3 || marks[2].synced < starts[1] {
		t.Fatalf("commit records %+v at %v: the third was written after the first's fdatasync", marks, starts)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{})
	for _, k := range []string{"a", "b", "c"} {
		if got := mustGet(t, s, 1, k); got != "v-"+k {
			t.Fatalf("%s after reopen: %q", k, got)
		}
	}
	// Open syncs what it recovered, so the first commit after it vouches
	// for everything before.
	mustPut(t, s, 1, "d", "v-d")
	marks, starts = commitMarks(t, s)
	if n := len(marks); n != 4 || marks[3].synced != starts[3] {
		t.Fatalf("commit records %+v at %v: the first after Open says the log was synced up to it", marks, starts)
	}
}

// powerLossImage copies the log of s as a power loss could leave it now,
// with the commit in lost unwritten, into a fresh store directory, and
// checks that Open drops that commit and the one after it, which was
// written during its fdatasync, and nothing else.
func powerLossImage(t *testing.T, s *Store, lost span) {
	t.Helper()
	s.mu.RLock()
	path := s.segments[len(s.segments)-1].path
	s.mu.RUnlock()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	clear(b[lost.start:lost.end])
	img := filepath.Join(t.TempDir(), "img")
	if err := openStore(t, img, Options{Slots: 16}).Close(); err != nil {
		t.Fatal(err)
	}
	wal := filepath.Join(img, walDir)
	if err := os.RemoveAll(wal); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(wal, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wal, filepath.Base(path)), b, 0o644); err != nil {
		t.Fatal(err)
	}
	r := openStore(t, img, Options{})
	if r.LastSeq() != 0 {
		t.Fatalf("power-loss image opened with last seq %d, want both commits dropped", r.LastSeq())
	}
}

// A failed fdatasync fails every commit not yet answered: a write written
// during it, or a no-op SetEpoch that relies on the marker it was to sync.
func TestFailedSyncFailsCommitsInFlight(t *testing.T) {
	put := func(key string) func(context.Context, *Store) error {
		return func(ctx context.Context, s *Store) error {
			_, err := s.Write(ctx, []Mutation{{Slot: 1, Key: []byte(key)}})
			return err
		}
	}
	setEpoch := func(ctx context.Context, s *Store) error { return s.SetEpoch(ctx, 5) }
	for _, tc := range []struct {
		name          string
		first, second func(context.Context, *Store) error
	}{
		{"write", put("a"), put("b")},
		{"no-op epoch change", setEpoch, setEpoch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHeldSync(1)
			s, _ := newStore(t, Options{hooks: hooks{beforeSync: h.beforeSync}})
			ctx := testCtx(t)
			call := func(f func(context.Context, *Store) error) chan error {
				done := make(chan error, 1)
				go func() { done <- f(ctx, s) }()
				return done
			}
			first := call(tc.first)
			<-h.held
			second := call(tc.second)
			waitInFlight(t, s, 2)
			// Closing the segment under the syncer makes its fdatasync fail.
			if err := s.wal.Close(); err != nil {
				t.Fatal(err)
			}
			h.releaseAll()
			for name, ch := range map[string]chan error{"first": first, "second, in flight with it": second} {
				if err := <-ch; !errors.Is(err, ErrFailed) {
					t.Fatalf("%s: %v, want ErrFailed", name, err)
				}
			}
			if s.DurableSeq() != 0 {
				t.Fatalf("durable seq %d after the failed fdatasync", s.DurableSeq())
			}
			if err := put("later")(ctx, s); !errors.Is(err, ErrFailed) {
				t.Fatalf("write after the failed fdatasync: %v", err)
			}
			s.wal = nil // already closed; Close must not fail on it
		})
	}
}

// A segment roll waits for the commits in flight: the old segment is
// synced before the new one is written, whose first commit record says
// nothing of it was synced.
func TestRollWaitsForCommitsInFlight(t *testing.T) {
	h := newHeldSync(0) // held below, once the log is on a spare segment
	s, _ := newStore(t, Options{NoSync: true, segmentSize: 4096, hooks: hooks{beforeSync: h.beforeSync}})
	t.Cleanup(h.releaseAll)
	ctx := testCtx(t)
	write := func(key string, size int) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := s.Write(ctx, []Mutation{{Slot: 1, Key: []byte(key), Value: bytes.Repeat([]byte("v"), size)}})
			done <- err
		}()
		return done
	}
	put := func(key string) chan error { return write(key, 2500) }
	segments := func() int {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return len(s.segments)
	}
	// A store starts on a segment that grows as it is written; a commit
	// into it asks for a spare, and the first commit after the spare is
	// ready moves the log there. Get there first, so that below only a
	// full segment rolls.
	for _, key := range []string{"w0", "w1"} {
		if err := <-write(key, 100); err != nil {
			t.Fatal(err)
		}
	}
	for len(s.spares.ready) == 0 && segments() == 1 {
		select {
		case <-ctx.Done():
			t.Fatal("no spare segment prepared")
		case <-time.After(time.Millisecond):
		}
	}
	if err := <-write("w2", 100); err != nil {
		t.Fatal(err)
	}
	segs, first := segments(), s.LastSeq()
	if segs != 2 {
		t.Fatalf("%d segments: want the log moved to its spare", segs)
	}
	h.hold(2)
	a := put("a")
	<-h.held
	b := put("b")
	waitInFlight(t, s, 2)
	h.release <- struct{}{} // a's fdatasync; b's is held next
	if err := <-a; err != nil {
		t.Fatal(err)
	}
	<-h.held
	c := put("c") // the segment is full: c needs a new one
	time.Sleep(50 * time.Millisecond)
	if n, last := segments(), s.LastSeq(); n != segs || last != first+2 {
		t.Fatalf("%d segments, last seq %d while b's fdatasync is held: want the roll to wait", n, last)
	}
	h.releaseAll()
	for _, ch := range []chan error{b, c} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if n := segments(); n != segs+1 {
		t.Fatalf("%d segments after the roll", n)
	}
	if marks, _ := commitMarks(t, s); len(marks) != 1 || marks[0].synced != 0 {
		t.Fatalf("new segment's commit records %+v: want one saying nothing was synced", marks)
	}
}

// Entries handed back after a commit come out of the pool zero, however
// many of them the request before used: a request sets only its own.
func TestPooledEntriesAreZero(t *testing.T) {
	for _, n := range []int{3, 70, 2} {
		r := &request{entries: newEntries(n)}
		for i := range r.entries {
			r.entries[i] = entry{seq: uint64(i + 1), key: []byte("k"), value: []byte("v"), hash: 7}
		}
		r.releaseEntries()
		if r.entries != nil {
			t.Fatal("a released request still holds its entries")
		}
		for _, m := range []int{1, n, 64} {
			e := newEntries(m)
			for i, x := range e[:cap(e)] {
				if x.seq != 0 || x.key != nil || x.value != nil || x.hash != 0 {
					t.Fatalf("after a request of %d entries, entry %d of %d taken (cap %d) is %+v", n, i, m, cap(e), x)
				}
			}
			(&request{entries: e}).releaseEntries()
		}
	}
}
