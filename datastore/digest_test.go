package datastore

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func allSlots(s *Store) []int {
	slots := make([]int, s.Slots())
	for i := range slots {
		slots[i] = i
	}
	return slots
}

// digests returns the digests of every slot once the applier reached the
// store's last seq.
func digests(tb testing.TB, s *Store) []SlotDigest {
	tb.Helper()
	applied, d, err := s.SlotDigests(testCtx(tb), allSlots(s), s.LastSeq())
	if err != nil {
		tb.Fatalf("slot digests: %v", err)
	}
	if applied < s.LastSeq() {
		tb.Fatalf("digests at applied seq %d, asked for %d", applied, s.LastSeq())
	}
	return d
}

func sameDigests(tb testing.TB, what string, got, want []SlotDigest) {
	tb.Helper()
	for i := range want {
		if got[i] != want[i] {
			tb.Fatalf("%s: slot %d digest %+v, want %+v", what, want[i].Slot, got[i], want[i])
		}
	}
}

// modelDigests computes the digests of content (slot → key → value)
// without the store.
func modelDigests(slots int, content map[int]map[string]string) []SlotDigest {
	out := make([]SlotDigest, slots)
	for slot := range out {
		out[slot].Slot = slot
		for k, v := range content[slot] {
			out[slot].Keys++
			out[slot].Bytes += uint64(len(k) + len(v))
			out[slot].Hash += kvHash([]byte(k), []byte(v))
		}
	}
	return out
}

// TestKVHashStable pins the digest hash: XXH64, seed 0, of the key's
// length (4 bytes big-endian), key and value (the values were checked
// against a separate implementation of the XXH64 specification). Changing
// it would make nodes of different versions disagree on every digest.
func TestKVHashStable(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		want       uint64
	}{
		{"k", "v", 0xe68b32e12dccd929},
		{"key", "", 0x10ff5e0760e39744},
		{"ke", "yv", 0xd1eb599c182c66b8}, // same bytes as above but for the length
	} {
		if got := kvHash([]byte(tc.key), []byte(tc.value)); got != tc.want {
			t.Errorf("kvHash(%q, %q) = %#x, want %#x", tc.key, tc.value, got, tc.want)
		}
	}
}

// workload applies a random history of puts, overwrites, deletes, drops
// and marks to s, in batches, and returns the content it leaves.
func workload(tb testing.TB, s *Store, rng *rand.Rand, ops int) map[int]map[string]string {
	tb.Helper()
	content := make(map[int]map[string]string)
	var muts []Mutation
	batch := 1
	for i := range ops {
		slot := rng.IntN(s.Slots())
		key := fmt.Sprintf("k%03d", rng.IntN(200))
		if content[slot] == nil {
			content[slot] = make(map[string]string)
		}
		switch r := rng.IntN(100); {
		case r < 2:
			muts = append(muts, Mutation{Slot: slot, Drop: true})
			delete(content, slot)
		case r < 4:
			muts = append(muts, Mutation{Mark: true, Key: []byte("m"), Value: fmt.Appendf(nil, "%d", i)})
		case r < 20:
			muts = append(muts, Mutation{Slot: slot, Key: []byte(key), Delete: true})
			delete(content[slot], key)
		default:
			v := fmt.Sprintf("v%d-%s", i, key[:rng.IntN(len(key))])
			muts = append(muts, Mutation{Slot: slot, Key: []byte(key), Value: []byte(v)})
			content[slot][key] = v
		}
		if len(muts) == batch || i == ops-1 {
			mustWrite(tb, s, muts...)
			muts, batch = muts[:0], 1+rng.IntN(50)
			if rng.IntN(20) == 0 {
				waitApplied(tb, s) // some history applied in between
			}
		}
	}
	return content
}

// putAll writes content with one put per pair, in map order.
func putAll(tb testing.TB, s *Store, content map[int]map[string]string) {
	tb.Helper()
	for slot, kvs := range content {
		for k, v := range kvs {
			mustPut(tb, s, slot, k, v)
		}
	}
}

// TestSlotDigestsHistories: stores that reach the same content by
// different histories — a random history with overwrites, deletes and
// drops; plain puts in another order; a catch-up restore over older
// content, then more log — have equal digests, which match the content;
// one different value changes its slot's hash and nothing else.
func TestSlotDigestsHistories(t *testing.T) {
	a, _ := newStore(t, Options{NoSync: true})
	content := workload(t, a, rand.New(rand.NewPCG(1, 2)), 3000)
	want := modelDigests(a.Slots(), content)
	sameDigests(t, "random history", digests(t, a), want)

	b, _ := newStore(t, Options{NoSync: true})
	mustPut(t, b, 7, "gone", "soon")
	mustDrop(t, b, 7)
	putAll(t, b, content)
	sameDigests(t, "plain puts", digests(t, b), want)

	// A follower restored from a snapshot of a's first slots, then the rest
	// through the log of another store.
	c, _ := newStore(t, Options{NoSync: true})
	mustPut(t, c, 3, "stale", "x")
	mustPut(t, c, 12, "stale", "y")
	mustWrite(t, c, Mutation{Mark: true, Key: []byte("m"), Value: []byte("stale")})
	waitApplied(t, c)
	r, err := c.Restore(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	seq, err := a.Snapshot(testCtx(t), []int{0, 1, 2, 3, 4, 5, 6, 7}, func(slot int, key, value []byte) error {
		return r.Put(slot, key, value)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Finish(seq, a.Epochs()); err != nil {
		t.Fatal(err)
	}
	if v := mustMark(t, c, "m"); v != nil {
		t.Fatalf("mark after a restore: %q", v)
	}
	rest := make(map[int]map[string]string)
	for slot := 8; slot < 16; slot++ {
		rest[slot] = content[slot]
	}
	src, _ := newStore(t, Options{NoSync: true})
	putAll(t, src, rest)
	entries, err := src.ReadLog(1, Limit{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		entries[i].Seq += seq
	}
	if err := c.ApplyLog(testCtx(t), entries); err != nil {
		t.Fatal(err)
	}
	sameDigests(t, "restore and log", digests(t, c), want)

	// One value differs (same length): that slot's hash alone.
	slot, key := -1, ""
	for slot = 0; key == ""; slot++ {
		for k := range content[slot] {
			key = k
		}
	}
	slot--
	v := []byte(content[slot][key])
	v[0] ^= 1
	mustPut(t, b, slot, key, string(v))
	got := digests(t, b)
	for i := range want {
		if differ := got[i].Hash != want[i].Hash; differ != (i == slot) || got[i].Keys != want[i].Keys || got[i].Bytes != want[i].Bytes {
			t.Fatalf("after changing slot %d key %q: slot %d digest %+v, was %+v", slot, key, i, got[i], want[i])
		}
	}
}

// copyStore copies a store's files as a crash would leave them: the
// caller makes sure the applier is between transactions.
func copyStore(tb testing.TB, from string) string {
	tb.Helper()
	to := filepath.Join(tb.TempDir(), "crashed")
	err := filepath.Walk(from, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		dst, err := os.Create(filepath.Join(to, rel))
		if err != nil {
			return err
		}
		if _, err := io.Copy(dst, src); err != nil {
			return err
		}
		return dst.Close()
	})
	if err != nil {
		tb.Fatal(err)
	}
	return to
}

// TestSlotDigestsCrashReplay: a store that crashed with part of its
// history applied and the rest only in its log has, once it replayed the
// log, the digests the store that did not crash has.
func TestSlotDigestsCrashReplay(t *testing.T) {
	opts, gate := gated(Options{NoSync: true})
	a, dir := newStore(t, opts)
	rng := rand.New(rand.NewPCG(3, 4))
	workload(t, a, rng, 1500)
	waitApplied(t, a)
	gate.Lock()
	for i := range 500 {
		slot := i % a.Slots()
		switch i % 7 {
		case 0:
			mustDrop(t, a, slot)
		case 1:
			mustWrite(t, a, Mutation{Slot: slot, Key: []byte("k001"), Delete: true})
		default:
			mustPut(t, a, slot, fmt.Sprintf("k%03d", i%150), fmt.Sprint(i))
		}
	}
	if a.AppliedSeq() >= a.LastSeq() {
		t.Fatal("nothing left to replay")
	}
	crashed := copyStore(t, dir)
	gate.Unlock()
	before := digests(t, a)

	c := openStore(t, crashed, Options{NoSync: true})
	if c.AppliedSeq() >= c.LastSeq() || c.LastSeq() != a.LastSeq() {
		t.Fatalf("crashed copy: applied %d, last %d; original last %d", c.AppliedSeq(), c.LastSeq(), a.LastSeq())
	}
	sameDigests(t, "after crash replay", digests(t, c), before)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Verify(crashed); err != nil {
		t.Fatal(err)
	}
}

// TestSlotDigestsTruncate: entries truncated away before they were
// committed never reach the digests.
func TestSlotDigestsTruncate(t *testing.T) {
	s, _ := newManual(t, Options{NoSync: true})
	s.SetCommitted(mustPut(t, s, 1, "a", "1"))
	s.SetCommitted(mustPut(t, s, 2, "b", "2"))
	keep := s.LastSeq()
	want := digests(t, s)
	mustPut(t, s, 1, "a", "changed")
	mustDrop(t, s, 2)
	mustPut(t, s, 3, "c", "3")
	if err := s.TruncateAfter(testCtx(t), keep); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, 4, "d", "4")
	s.SetCommitted(s.LastSeq())
	want[4] = modelDigests(16, map[int]map[string]string{4: {"d": "4"}})[4]
	sameDigests(t, "after truncation", digests(t, s), want)
	if mustGet(t, s, 2, "b") != "2" {
		t.Fatal("the truncated drop still hides slot 2")
	}
}

// TestSlotStatsAtOpen: a store written before stats existed (format
// version 3, no stats bucket) gets them computed on Open; stats that do
// not match the keys fail Verify.
func TestSlotStatsAtOpen(t *testing.T) {
	s, dir := newStore(t, Options{NoSync: true})
	content := workload(t, s, rand.New(rand.NewPCG(5, 6)), 1000)
	want := modelDigests(16, content)
	waitApplied(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	editData(t, dir, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketStats); err != nil {
			return err
		}
		return putMeta(tx, metaVersion, formatVersionNoStats)
	})
	s = openStore(t, dir, Options{NoSync: true})
	sameDigests(t, "computed at open", digests(t, s), want)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Verify(dir); err != nil {
		t.Fatal(err)
	}
	editData(t, dir, func(tx *bolt.Tx) error {
		if v, err := metaU64(tx, metaVersion); err != nil || v != formatVersion {
			t.Errorf("format version %d after the upgrade (%v)", v, err)
		}
		st := want[5]
		return putSlotStats(tx.Bucket(bucketStats), 5, slotStats{keys: st.Keys, bytes: st.Bytes, hash: st.Hash + 1})
	})
	if err := Verify(dir); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("verify with wrong stats of slot 5: %v", err)
	}
}

// editData changes the bbolt file of a closed store.
func editData(tb testing.TB, dir string, fn func(tx *bolt.Tx) error) {
	tb.Helper()
	db, err := bolt.Open(filepath.Join(dir, dataFile), 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		tb.Fatal(err)
	}
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
}

// CommittedSlotDigests describes the committed content without waiting for
// the applier: against a model, over random puts, deletes and drops with
// the applier at random points behind them.
func TestCommittedSlotDigestsRandom(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true, Slots: 4})
	ctx := testCtx(t)
	rng := rand.New(rand.NewPCG(5, 6))
	model := map[int]map[string]string{0: {}, 1: {}, 2: {}, 3: {}}
	behind := 0
	for round := range 60 {
		randomRound(t, s, rng, model, 100, round)
		seq, got, err := s.CommittedSlotDigests(ctx, []int{3, 1, 0, 2}, s.CommittedSeq())
		if err != nil {
			t.Fatal(err)
		}
		if s.AppliedSeq() < seq {
			behind++
		}
		want := modelDigests(4, model)
		sameDigests(t, fmt.Sprintf("round %d, seq %d", round, seq), got, []SlotDigest{want[3], want[1], want[0], want[2]})
	}
	if behind == 0 {
		t.Fatal("the applier was never behind the digests: they waited for it, or the test tests nothing")
	}
}

// Digests read while a writer writes and apply rounds run and trim the
// tail each equal the model's of the history replayed to the seq they
// return.
func TestCommittedSlotDigestsConcurrent(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true, Slots: 4, tailBytes: 64 << 10})
	ctx := testCtx(t)
	reads := readsDuringWrites(t, s, func() (uint64, any) {
		seq, d, err := s.CommittedSlotDigests(ctx, []int{0, 1, 2, 3}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return seq, d
	})
	for _, r := range reads {
		sameDigests(t, fmt.Sprintf("digests at seq %d", r.seq), r.got.([]SlotDigest), modelDigests(4, r.want))
	}
}

// An apply round that commits and trims the tail after CommittedSlotDigests
// read the data file makes it read again: the digests still describe the
// committed content.
func TestCommittedSlotDigestsRoundMeanwhile(t *testing.T) {
	var s *Store
	reads := 0
	s, _ = newStore(t, Options{NoSync: true, Slots: 4, tailBytes: 1, hooks: hooks{beforeTailRead: func() {
		if reads++; reads == 1 {
			s.applyMu.Unlock()
			waitApplied(t, s)
			holdApplier(t, s) // the round has trimmed the tail
		}
	}}})
	ctx := testCtx(t)
	model := map[int]map[string]string{0: {}, 1: {}, 2: {}, 3: {}}
	rng := rand.New(rand.NewPCG(7, 8))
	for round := range 3 {
		muts := make([]Mutation, 100)
		for i := range muts {
			muts[i] = randomMutation(rng, 50, fmt.Sprintf("v%d-%d", round, i))
			applyToModel(model, muts[i])
		}
		if _, err := s.Write(ctx, muts); err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			waitApplied(t, s)
			holdApplier(t, s) // the next rounds' entries stay in the tail
		}
	}
	seq, got, err := s.CommittedSlotDigests(ctx, []int{0, 1, 2, 3}, 0)
	s.applyMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if reads != 2 || seq != s.CommittedSeq() {
		t.Fatalf("%d reads of the tail at seq %d (committed %d), want a second one after the round", reads, seq, s.CommittedSeq())
	}
	sameDigests(t, "after a round meanwhile", got, modelDigests(4, model))
}

// When every read finds its records trimmed by a round, the last read holds
// the applier off and succeeds.
func TestCommittedSlotDigestsKeepTrimmed(t *testing.T) {
	var s *Store
	reads := 0
	model := map[int]map[string]string{0: {}, 1: {}, 2: {}, 3: {}}
	write := func(m Mutation) {
		if _, err := s.Write(testCtx(t), []Mutation{m}); err != nil {
			t.Error(err)
		}
		applyToModel(model, m)
	}
	s, _ = newStore(t, Options{NoSync: true, Slots: 4, tailBytes: 1, hooks: hooks{beforeTailRead: func() {
		// A round trims what this read needs, and a write the applier is
		// held off from leaves the next read something to need; the last
		// read holds the applier itself.
		if reads++; reads < trimmedTries {
			s.applyMu.Unlock()
			waitApplied(t, s)
			holdApplier(t, s) // the round has trimmed the tail
			write(Mutation{Slot: reads % 4, Key: fmt.Appendf(nil, "r%d", reads), Value: []byte("v")})
			if reads+1 == trimmedTries {
				s.applyMu.Unlock()
			}
		}
	}}})
	rng := rand.New(rand.NewPCG(9, 10))
	for i := range 200 {
		write(randomMutation(rng, 50, fmt.Sprintf("v%d", i)))
	}
	holdApplier(t, s)
	write(Mutation{Slot: 0, Key: []byte("r0"), Value: []byte("v")})
	_, got, err := s.CommittedSlotDigests(testCtx(t), []int{0, 1, 2, 3}, 0)
	if err != nil || reads != trimmedTries {
		t.Fatalf("CommittedSlotDigests after %d reads: %v; want it to succeed on read %d", reads, err, trimmedTries)
	}
	sameDigests(t, "after rounds at every read", got, modelDigests(4, model))
}

// holdApplier waits out the apply round in progress, if any (its trim
// included), and keeps the next from starting until s.applyMu is unlocked,
// so the entries written meanwhile stay in the tail, unapplied.
func holdApplier(t *testing.T, s *Store) {
	t.Helper()
	if err := s.lockApply(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// A slot filled in key order, in rounds, as a migration's copy fills it,
// is packed into full leaf pages; keys put in random order keep bbolt's
// half-page splits, which leave room for the inserts that follow.
func TestAppendedSlotPagesFull(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	const n, round = 20_000, 1_000
	value := make([]byte, 100)
	write := func(slot int, order []int) {
		for start := 0; start < n; start += round {
			muts := make([]Mutation, 0, round)
			for _, i := range order[start : start+round] {
				muts = append(muts, Mutation{Slot: slot, Key: fmt.Appendf(nil, "k%07d", i), Value: value})
			}
			if _, err := s.Write(testCtx(t), muts); err != nil {
				t.Fatal(err)
			}
			waitApplied(t, s) // a round per write
		}
	}
	inOrder := make([]int, n)
	for i := range inOrder {
		inOrder[i] = i
	}
	write(1, inOrder)
	write(2, rand.Perm(n))
	fill := func(slot int) float64 {
		var st bolt.BucketStats
		if err := s.db.View(func(tx *bolt.Tx) error {
			name := slotBucketName(slot)
			st = tx.Bucket(name[:]).Stats()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return float64(st.LeafInuse) / float64(st.LeafAlloc)
	}
	if f := fill(1); f < 0.9 {
		t.Errorf("slot filled in key order: leaf pages %.0f%% full, want at least 90%%", 100*f)
	}
	if f := fill(2); f > 0.8 {
		t.Errorf("slot filled in random order: leaf pages %.0f%% full, want room left for inserts", 100*f)
	}
	for _, slot := range []int{1, 2} {
		for _, i := range []int{0, 1, n / 2, n - 1} {
			if got := mustGet(t, s, slot, fmt.Sprintf("k%07d", i)); got != string(value) {
				t.Fatalf("slot %d key %d: %q", slot, i, got)
			}
		}
	}
	if d := digests(t, s); d[1].Keys != n || d[2].Keys != n {
		t.Fatalf("slot key counts %d and %d, want %d each", d[1].Keys, d[2].Keys, n)
	}
}
