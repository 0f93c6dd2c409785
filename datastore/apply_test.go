package datastore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestLatestInOrder: one entry per slot and key, the newest, in slot and
// key order, also when keys share a hash (A and B below) or a slot differs.
func TestLatestInOrder(t *testing.T) {
	var tl tailLog
	for _, e := range []entry{
		{seq: 10, slot: 1, key: []byte("A"), prev: 0},
		{seq: 11, slot: 1, key: []byte("B"), prev: 10},
		{seq: 12, slot: 1, key: []byte("A"), prev: 11},
		{seq: 13, slot: 1, key: []byte("C"), prev: 0},
		{seq: 14, slot: 1, key: []byte("C"), prev: 13},
		{seq: 15, slot: 2, key: []byte("A"), prev: 12},
		{seq: 16, slot: 1, key: []byte("C"), prev: 14},
	} {
		tl.push(e)
	}
	v := tl.view(0, tl.len())
	var got []uint64
	for _, e := range latestInOrder(&v) {
		got = append(got, e.seq)
	}
	if want := []uint64{12, 11, 16, 15}; !slices.Equal(got, want) {
		t.Fatalf("latest in order: seqs %v, want %v", got, want)
	}
}

func TestScanWithLaggingApplier(t *testing.T) {
	var mu sync.Mutex
	opts := Options{NoSync: true, hooks: hooks{beforeApply: func() error {
		mu.Lock() // held by the test while the applier must lag
		defer mu.Unlock()
		return nil
	}}}
	s, _ := newStore(t, opts)
	mu.Lock()
	muts := make([]Mutation, 0, 100)
	for i := range 2000 {
		muts = append(muts, Mutation{Slot: i % 16, Key: fmt.Appendf(nil, "k%05d", i), Value: []byte("v")})
		if len(muts) == cap(muts) {
			if _, err := s.Write(testCtx(t), muts); err != nil {
				t.Fatal(err)
			}
			muts = muts[:0]
		}
	}
	if s.AppliedSeq() != 0 {
		t.Fatalf("applier ran: applied %d", s.AppliedSeq())
	}
	// Gets are served from the overlay without waiting.
	if got := mustGet(t, s, 7, "k01991"); got != "v" {
		t.Fatalf("get = %q", got)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Scan(ctx, []int{0}, nil, nil, Limit{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("scan with the applier held: %v", err)
	}
	mu.Unlock()
	kvs, err := s.Scan(testCtx(t), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, nil, nil, Limit{})
	if err != nil || len(kvs) != 2000 {
		t.Fatalf("scan = %d pairs, %v", len(kvs), err)
	}
}

// TestApplyFailureReopen: a failed apply transaction fails the store
// visibly (Failed, Err, writes refused, a waiting Scan returns), Close
// works, and a reopen recovers every acknowledged write from the log.
func TestApplyFailureReopen(t *testing.T) {
	var fail atomic.Bool
	opts := Options{Slots: 16, NoSync: true, hooks: hooks{beforeApply: func() error {
		if fail.Load() {
			return errors.New("injected apply failure")
		}
		return nil
	}}}
	dir := filepath.Join(t.TempDir(), "s")
	s := openStore(t, dir, opts)
	for i := range 50 {
		mustPut(t, s, i%16, fmt.Sprintf("k%d", i), "v")
	}
	waitApplied(t, s)
	fail.Store(true)
	// One call: puts one by one would race the failing applier, which may
	// fail the store before the last of them is acknowledged.
	var muts []Mutation
	for i := 50; i < 100; i++ {
		muts = append(muts, Mutation{Slot: i % 16, Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")})
	}
	if _, err := s.Write(testCtx(t), muts); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scan(testCtx(t), []int{1}, nil, nil, Limit{}); !errors.Is(err, ErrFailed) {
		t.Fatalf("scan waiting on a failed applier: %v", err)
	}
	select {
	case <-s.Failed():
	case <-testCtx(t).Done():
		t.Fatal("Failed not closed")
	}
	if err := s.Err(); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Err() = %v", err)
	}
	if _, err := s.Write(testCtx(t), []Mutation{{Slot: 1, Key: []byte("x")}}); !errors.Is(err, ErrFailed) {
		t.Fatalf("write on a failed store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close a failed store: %v", err)
	}
	opts.hooks = hooks{}
	s = openStore(t, dir, opts)
	if s.Err() != nil {
		t.Fatalf("reopened store: %v", s.Err())
	}
	for i := range 100 {
		mustGet(t, s, i%16, fmt.Sprintf("k%d", i))
	}
	waitApplied(t, s)
}

// The applier starts a round once the committed, unapplied entries cost
// the byte bound (maxApplyBytes, here 4 MiB), however few they are, and a
// round applies at most that: memory does not grow with the write rate.
func TestApplyBoundedByBytes(t *testing.T) {
	release := make(chan struct{})
	// Rounds are not cut by the pages they dirty (applyDirty): only bytes.
	obs := &rounds{}
	s, _ := newManual(t, Options{NoSync: true, Observer: obs, overlayLimit: 1 << 30, applyBytes: 4 << 20, applyDirty: 1 << 30, hooks: hooks{beforeApply: func() error {
		<-release
		return nil
	}}})
	value := make([]byte, 100)
	var seqs []uint64
	var cost int64
	for i := 0; cost < 2*s.applyBytes; i++ {
		muts := make([]Mutation, 1000)
		for j := range muts {
			muts[j] = Mutation{Slot: j % 16, Key: fmt.Appendf(nil, "k%07d", i*1000+j), Value: value}
			cost += int64(len(muts[j].Key)+len(value)) + entryOverhead
		}
		seq, err := s.Write(testCtx(t), muts)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	if uint64(len(seqs))*1000 >= minApplyEntries {
		t.Fatalf("the test needs fewer than %d entries, has %d", minApplyEntries, len(seqs)*1000)
	}
	if s.applyDue() {
		t.Fatal("apply due with nothing committed")
	}
	s.SetCommitted(seqs[len(seqs)/4])
	if s.applyDue() {
		t.Fatal("apply due with a quarter of the bound committed")
	}
	last := seqs[len(seqs)-1]
	s.SetCommitted(last)
	if !s.applyDue() {
		t.Fatalf("apply not due with %d bytes committed", cost)
	}
	close(release)
	if err := s.waitApplied(testCtx(t), last); err != nil {
		t.Fatal(err)
	}
	// Twice the bound committed: at least two rounds, none over the bound
	// by more than the entry that crossed it.
	each := cost / (int64(len(seqs)) * 1000)
	obs.mu.Lock()
	if len(obs.n) < 2 {
		t.Errorf("%d bytes applied in %d round(s); a round applies at most %d", cost, len(obs.n), s.applyBytes)
	}
	for _, n := range obs.n {
		if int64(n)*each > s.applyBytes+each {
			t.Errorf("a round applied %d entries, %d bytes; the bound is %d", n, int64(n)*each, s.applyBytes)
		}
	}
	obs.mu.Unlock()
	s.mu.Lock()
	left := s.committedBytesLocked()
	s.mu.Unlock()
	if left != 0 || s.applyDue() {
		t.Fatalf("after applying everything %d committed bytes counted", left)
	}
}

// rounds records the entries of each apply round, and how long it took.
type rounds struct {
	noObserver
	mu   sync.Mutex
	n    []int
	took []time.Duration
}

func (r *rounds) Applied(entries int, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n = append(r.n, entries)
	r.took = append(r.took, took)
}

// since returns the rounds that ended after the first from: their
// entries, and how long they took.
func (r *rounds) since(from int) ([]int, []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.n[from:]), slices.Clone(r.took[from:])
}

// count is how many rounds ended so far.
func (r *rounds) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.n)
}

// Random puts over a key space of many pages dirty about a page each: a
// round of them commits in parts of about applyDirty bytes of dirty pages,
// so that bbolt never holds the whole round's pages in memory at once.
func TestApplyPartsBoundedByDirtyPages(t *testing.T) {
	// Values of 4,000 bytes, four to a leaf page (the fill, in key order,
	// packs them): ~3,000 pages; parts aim at 1,024.
	const keys, target = 12_000, 16 << 20
	obs := &rounds{}
	var armed atomic.Bool
	var s *Store
	var allocs []int64 // page bytes allocated by the commits before each part ends
	opts := Options{NoSync: true, Observer: obs, applyDirty: target, hooks: hooks{betweenApplyParts: func() error {
		if armed.Load() {
			stats := s.db.Stats()
			allocs = append(allocs, stats.TxStats.GetPageAlloc())
		}
		return nil
	}}}
	s, _ = newStore(t, opts)
	value := make([]byte, 4000)
	write := func(ids []int) {
		muts := make([]Mutation, len(ids))
		for i, id := range ids {
			muts[i] = Mutation{Slot: id % 16, Key: fmt.Appendf(nil, "k%07d", id), Value: value}
		}
		if _, err := s.Write(testCtx(t), muts); err != nil {
			t.Fatal(err)
		}
	}
	all := make([]int, keys)
	for i := range all {
		all[i] = i
	}
	write(all)
	waitApplied(t, s)
	obs.mu.Lock()
	obs.n = nil
	obs.mu.Unlock()

	rng := rand.New(rand.NewPCG(1, 2))
	updates := make([]int, 8_000)
	for i := range updates {
		updates[i] = rng.IntN(keys)
	}
	before := s.db.Stats()
	allocs = []int64{before.TxStats.GetPageAlloc()}
	armed.Store(true)
	write(updates)
	waitApplied(t, s)
	armed.Store(false)

	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.n) != 1 {
		t.Fatalf("%d random updates applied in rounds of %v: want one round, in parts", len(updates), obs.n)
	}
	after := s.db.Stats()
	allocs = append(allocs, after.TxStats.GetPageAlloc())
	if len(allocs) < 4 {
		t.Fatalf("%d random updates over %d keys of 4,000 bytes committed in %d transaction(s): want them cut to about %d dirty bytes", len(updates), keys, len(allocs)-1, target)
	}
	// A part checks its nodes every yieldEvery entries, each of which
	// dirties up to a page and its parents.
	limit := int64(target + 2*yieldEvery*pageSize)
	for i := 1; i < len(allocs); i++ {
		if part := allocs[i] - allocs[i-1]; part > limit {
			t.Errorf("transaction %d of the round allocated %d bytes of pages; the bound is %d (parts %v)", i, part, limit, allocs)
		}
	}
	for _, id := range updates[:100] {
		if got := mustGet(t, s, id%16, fmt.Sprintf("k%07d", id)); len(got) != len(value) {
			t.Fatalf("k%07d: %d bytes", id, len(got))
		}
	}
}

// Keys put into a new or small tree pile up in a few nodes, one per bucket
// at first, whose count says nothing of the memory they hold: there a
// round's transactions are cut by the bytes of keys and records given to
// bbolt, with its inodes. Loading a million keys into a new store, the
// first round's single transaction had held ~50 MB.
func TestApplyPartsBoundedInNewTree(t *testing.T) {
	const keys, target = 40_000, 1 << 20
	obs := &rounds{}
	var parts atomic.Int32
	s, _ := newStore(t, Options{Slots: 1, NoSync: true, Observer: obs, applyDirty: target, hooks: hooks{betweenApplyParts: func() error {
		parts.Add(1)
		return nil
	}}})
	value := make([]byte, 100)
	muts := make([]Mutation, keys)
	var given int
	for i := range muts {
		muts[i] = Mutation{Key: fmt.Appendf(nil, "k%07d", i), Value: value}
		given += len(muts[i].Key) + recordSize(len(value)) + boltInode
	}
	if _, err := s.Write(testCtx(t), muts); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, s)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.n) != 1 {
		t.Fatalf("%d puts applied in rounds of %v: want one round, in parts", keys, obs.n)
	}
	// A part may pass the bound by one put.
	if want := given / (target + given/keys); int(parts.Load())+1 < want {
		t.Errorf("%d puts (%d bytes of keys and records) into a new bucket committed in %d transaction(s): want at least %d, of about %d bytes",
			keys, given, parts.Load()+1, want, target)
	}
	if got := mustGet(t, s, 0, fmt.Sprintf("k%07d", keys-1)); len(got) != len(value) {
		t.Fatalf("last key: %d bytes", len(got))
	}
}

// TestApplyPartsCrash: a round that commits in parts (here every
// yieldEvery entries) leaves the file holding some of its entries past the
// applied seq. Readers of the file alone wait for the round; a digest of
// the committed state is already exact; and a store copied there, as a
// crash would leave it, replays the round and ends with the same content
// and digests.
func TestApplyPartsCrash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	var armed atomic.Bool
	var parts atomic.Int32
	var s *Store
	var crashed string
	var mid []SlotDigest
	var midErr, settledErr error
	opts := Options{Slots: 16, NoSync: true, applyDirty: pageSize, hooks: hooks{betweenApplyParts: func() error {
		if !armed.Load() || parts.Add(1) != 2 {
			return nil
		}
		crashed = copyStore(t, dir)
		_, mid, midErr = s.CommittedSlotDigests(testCtx(t), allSlots(s), 0)
		ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
		defer cancel()
		settledErr = s.viewSettled(ctx, func(*bolt.Tx) error { return nil })
		return nil
	}}}
	s = openStore(t, dir, opts)
	rng := rand.New(rand.NewPCG(5, 6))
	content := workload(t, s, rng, 3000)
	waitApplied(t, s)

	// One round of random puts, deletes and drops over the slots.
	armed.Store(true)
	var muts []Mutation
	for i := range 3000 {
		slot := rng.IntN(s.Slots())
		key := fmt.Sprintf("k%03d", rng.IntN(400))
		switch {
		case i%500 == 499:
			mustWrite(t, s, muts...)
			muts = muts[:0]
			mustDrop(t, s, slot)
			content[slot] = map[string]string{}
		case rng.IntN(5) == 0:
			muts = append(muts, Mutation{Slot: slot, Key: []byte(key), Delete: true})
			delete(content[slot], key)
		default:
			v := fmt.Sprintf("w%d", i)
			muts = append(muts, Mutation{Slot: slot, Key: []byte(key), Value: []byte(v)})
			if content[slot] == nil {
				content[slot] = map[string]string{}
			}
			content[slot][key] = v
		}
	}
	mustWrite(t, s, muts...)
	waitApplied(t, s)
	if parts.Load() < 2 {
		t.Fatalf("the round committed in %d part(s): want several", parts.Load()+1)
	}
	if !errors.Is(settledErr, context.DeadlineExceeded) {
		t.Fatalf("a read of the file alone between a round's parts: %v, want it to wait", settledErr)
	}
	want := modelDigests(s.Slots(), content)
	if midErr != nil {
		t.Fatal(midErr)
	}
	sameDigests(t, "committed digests between a round's parts", mid, want)
	sameDigests(t, "digests after the round", digests(t, s), want)

	// Reopened as a replica is, committing only what it is told: the
	// round's entries count as committed, as they were, so that no
	// truncation takes back what the file holds of them. (No round is
	// due: the entries cost less than a round's bound.)
	c := openManual(t, crashed, Options{NoSync: true})
	if c.AppliedSeq() >= c.LastSeq() || c.CommittedSeq() != c.LastSeq() {
		t.Fatalf("crashed copy: applied %d, committed %d, last %d: want the round cut short committed and still to apply", c.AppliedSeq(), c.CommittedSeq(), c.LastSeq())
	}
	if err := c.TruncateAfter(testCtx(t), c.AppliedSeq()); !errors.Is(err, ErrTruncateCommitted) {
		t.Fatalf("truncate the crashed copy to its applied seq: %v, want ErrTruncateCommitted", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// The round that replays them reaches the end of the one cut short,
	// although its own bound is a byte.
	c = openManual(t, crashed, Options{NoSync: true, applyBytes: 1})
	sameDigests(t, "after replaying the round", digests(t, c), want)
	if c.applies.Load() != 1 {
		t.Fatalf("the replay took %d rounds, want one", c.applies.Load())
	}
	if got, want := dump(t, c), dump(t, s); !slices.EqualFunc(got, want, func(a, b KV) bool {
		return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value)
	}) {
		t.Fatalf("after replaying the round: %d pairs, want %d", len(got), len(want))
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Verify(crashed); err != nil {
		t.Fatal(err)
	}
}

// TestApplierWokenWhenDue: while the applier waits for a round to be due,
// commits too small for one do not wake it, and the commit that makes one
// due does, well before its delay runs out.
func TestApplierWokenWhenDue(t *testing.T) {
	if applyDelay < 10*time.Second {
		t.Fatalf("applyDelay is %s: the test tells a woken applier from its delay only if that is long", applyDelay)
	}
	s, _ := newManual(t, Options{NoSync: true, applyBytes: 64 << 10})
	armed := func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.applyArmed
	}
	s.SetCommitted(mustPut(t, s, 1, "k0", "v"))
	deadline := time.Now().Add(5 * time.Second)
	for !armed() || len(s.applyWake) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the applier did not start waiting for a round")
		}
		time.Sleep(time.Millisecond)
	}
	var small uint64
	for i := 1; i <= 10; i++ {
		small = mustPut(t, s, 1, fmt.Sprintf("k%d", i), "v")
		s.SetCommitted(small)
		if len(s.applyWake) > 0 {
			t.Fatalf("commit %d of a few bytes woke the applier", i)
		}
	}
	value := make([]byte, 1000)
	var last uint64
	for i := 0; i < 100; i++ {
		last = mustPut(t, s, 2, fmt.Sprintf("big%d", i), string(value))
	}
	s.SetCommitted(last)
	// A round applies at most applyBytes: the first one is enough.
	deadline = time.Now().Add(5 * time.Second)
	for s.AppliedSeq() <= small {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d of %d: a due round did not wake the applier", s.AppliedSeq(), last)
		}
		time.Sleep(time.Millisecond)
	}
}
