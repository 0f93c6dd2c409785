package datastore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// SnapshotCut names the seq before the first record, the same seq it
// returns; writes after it started are not in the copy.
func TestSnapshotCut(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	for i := range 10 {
		mustPut(t, s, 0, fmt.Sprintf("k%02d", i), "v")
	}
	var begun uint64
	records := 0
	seq, err := s.SnapshotCut(testCtx(t), []int{0}, func(seq uint64) error {
		if records > 0 {
			t.Error("begin after a record")
		}
		begun = seq
		mustPut(t, s, 0, "late", "v") // after the cut
		return nil
	}, func(slot int, key, value []byte) error {
		if string(key) == "late" {
			t.Error("a write after the cut is in the copy")
		}
		records++
		return nil
	})
	if err != nil || seq != 10 || begun != seq || records != 10 {
		t.Fatalf("SnapshotCut = %d, %v; begin saw %d; %d records", seq, err, begun, records)
	}
	stop := errors.New("stop")
	if _, err := s.SnapshotCut(testCtx(t), []int{0}, func(uint64) error { return stop }, func(int, []byte, []byte) error {
		t.Error("record after begin failed")
		return nil
	}); !errors.Is(err, stop) {
		t.Fatalf("failing begin: %v", err)
	}
}

// SnapshotCut merges what is committed but not applied into the data
// file's keys instead of waiting for the applier: overwrites, deletes, new
// keys, a dropped slot written again and a mark, in key order, cut at the
// committed seq, the same copy Snapshot gives once everything is applied;
// so does SnapshotInSteps, with nothing written between its steps.
func TestSnapshotCutMergesUnapplied(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	model := map[int]map[string]string{0: {}, 1: {}, 2: {}}
	write := func(muts ...Mutation) {
		t.Helper()
		if _, err := s.Write(ctx, muts); err != nil {
			t.Fatal(err)
		}
		for _, m := range muts {
			applyToModel(model, m)
		}
	}
	put := func(slot int, key, value string) Mutation {
		return Mutation{Slot: slot, Key: []byte(key), Value: []byte(value)}
	}
	for slot := range 3 {
		for i := range 20 {
			write(put(slot, fmt.Sprintf("k%02d", 2*i), "old"))
		}
	}
	waitApplied(t, s)
	write(put(0, "k04", "new"), put(0, "k05", "new"), Mutation{Slot: 0, Key: []byte("k06"), Delete: true},
		put(0, "k99", "a"), put(0, "k99", "b"), put(0, "a", "first"), Mutation{Slot: 0, Key: []byte("k38"), Delete: true})
	write(put(1, "k07", "gone"), Mutation{Slot: 1, Key: []byte("k07"), Delete: true}, Mutation{Key: []byte("mark"), Value: []byte("m"), Mark: true})
	write(put(2, "k01", "before the drop"))
	if _, err := s.DropSlots(ctx, []int{2}); err != nil {
		t.Fatal(err)
	}
	model[2] = map[string]string{}
	write(put(2, "k03", "after the drop"))

	copyOf := func(snap func(fn func(slot int, key, value []byte) error) (uint64, error)) (uint64, map[int]map[string]string) {
		t.Helper()
		got := map[int]map[string]string{0: {}, 1: {}, 2: {}}
		last := map[int]string{}
		seq, err := snap(func(slot int, key, value []byte) error {
			if prev, ok := last[slot]; ok && string(key) <= prev {
				t.Errorf("slot %d: key %q after %q", slot, key, prev)
			}
			last[slot] = string(key)
			got[slot][string(key)] = string(value)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return seq, got
	}
	committed := s.CommittedSeq()
	seq, got := copyOf(func(fn func(int, []byte, []byte) error) (uint64, error) {
		return s.SnapshotCut(ctx, []int{0, 1, 2}, func(uint64) error { return nil }, fn)
	})
	if applied := s.AppliedSeq(); applied >= committed {
		t.Fatalf("applied seq %d reached the committed %d: the copy waited for the applier", applied, committed)
	}
	if seq != committed || !reflect.DeepEqual(got, model) {
		t.Fatalf("SnapshotCut = seq %d (committed %d)\n%v\nwant\n%v", seq, committed, got, model)
	}
	// In steps of one key each: every step resumes after a key the file
	// holds, one only the unapplied entries hold, or one they delete.
	seq, got = copyOf(func(fn func(int, []byte, []byte) error) (uint64, error) {
		return s.SnapshotInSteps(ctx, []int{0, 1, 2}, time.Nanosecond, fn, nil)
	})
	if applied := s.AppliedSeq(); applied >= committed {
		t.Fatalf("applied seq %d reached the committed %d: the copy waited for the applier", applied, committed)
	}
	if seq != committed || !reflect.DeepEqual(got, model) {
		t.Fatalf("SnapshotInSteps = seq %d (committed %d)\n%v\nwant\n%v", seq, committed, got, model)
	}
	waitApplied(t, s)
	seq, got = copyOf(func(fn func(int, []byte, []byte) error) (uint64, error) {
		return s.Snapshot(ctx, []int{0, 1, 2}, fn)
	})
	if seq != committed || !reflect.DeepEqual(got, model) {
		t.Fatalf("Snapshot once applied = seq %d\n%v\nwant\n%v", seq, got, model)
	}
}

// SnapshotCut against a model, over random puts, deletes and drops with
// the applier at random points behind them.
func TestSnapshotCutRandom(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[int]map[string]string{}
	for slot := range 4 {
		model[slot] = map[string]string{}
	}
	slots := []int{3, 0, 1, 2}
	for round := range 40 {
		randomRound(t, s, rng, model, 200, round)
		got := map[int]map[string]string{}
		for slot := range 4 {
			got[slot] = map[string]string{}
		}
		seq, err := s.SnapshotCut(ctx, slots, func(uint64) error { return nil }, func(slot int, key, value []byte) error {
			got[slot][string(key)] = string(value)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if seq != s.CommittedSeq() || !reflect.DeepEqual(got, model) {
			t.Fatalf("round %d: SnapshotCut at seq %d (committed %d, applied %d) differs from the model\n%v\nwant\n%v",
				round, seq, s.CommittedSeq(), s.AppliedSeq(), got, model)
		}
	}
}

// Snapshots taken while a writer writes and apply rounds run and trim the
// tail each equal the history replayed to the seq they return.
func TestSnapshotConcurrent(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true, tailBytes: 64 << 10})
	ctx := testCtx(t)
	reads := readsDuringWrites(t, s, func() (uint64, any) {
		kv := map[int]map[string]string{0: {}, 1: {}, 2: {}, 3: {}}
		seq, err := s.Snapshot(ctx, []int{2, 0, 3, 1}, func(slot int, key, value []byte) error {
			kv[slot][string(key)] = string(value)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return seq, kv
	})
	for _, r := range reads {
		if !reflect.DeepEqual(r.got, r.want) {
			t.Fatalf("the copy at seq %d differs from the history replayed to it\n%v\nwant\n%v", r.seq, r.got, r.want)
		}
	}
}

// A copy in steps taken while a writer writes and apply rounds run, a new
// read transaction for every key, followed by the history after the seq it
// returns, reproduces the store: what a migration's target imports.
func TestSnapshotInStepsConcurrent(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true, tailBytes: 64 << 10})
	ctx := testCtx(t)
	reads := readsDuringWrites(t, s, func() (uint64, any) {
		kv := map[int]map[string]string{0: {}, 1: {}, 2: {}, 3: {}}
		seq, err := s.SnapshotInSteps(ctx, []int{2, 0, 3, 1}, time.Nanosecond, func(slot int, key, value []byte) error {
			kv[slot][string(key)] = string(value)
			return nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return seq, kv
	})
	for _, r := range reads {
		got := r.got.(map[int]map[string]string)
		for _, m := range r.later {
			applyToModel(got, m)
			applyToModel(r.want, m)
		}
		if !reflect.DeepEqual(got, r.want) {
			t.Fatalf("the copy in steps from seq %d, plus the history after it, differs from the store\n%v\nwant\n%v", r.seq, got, r.want)
		}
	}
}

// A copy in steps begins a new read transaction once a step has passed
// and once its callback ends the step, and calls between outside them: a
// reader that waits there holds no transaction.
func TestSnapshotInStepsRenewsTransaction(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	var muts []Mutation
	for i := range 100 {
		muts = append(muts, Mutation{Slot: i % 2, Key: fmt.Appendf(nil, "k%03d", i), Value: []byte("v")})
	}
	if _, err := s.Write(ctx, muts); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, s)
	copySteps := func(step time.Duration, fn func() error) (keys, steps int) {
		t.Helper()
		before := s.db.Stats().TxN
		steps = 1
		if _, err := s.SnapshotInSteps(ctx, []int{1, 0}, step, func(int, []byte, []byte) error {
			keys++
			return fn()
		}, func() error {
			if open := s.db.Stats().OpenTxN; open != 0 {
				t.Errorf("%d read transactions open between two steps", open)
			}
			steps++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if began := s.db.Stats().TxN - before; began != steps {
			t.Errorf("%d steps began %d read transactions", steps, began)
		}
		return keys, steps
	}
	if keys, steps := copySteps(time.Millisecond, func() error {
		time.Sleep(time.Millisecond)
		return nil
	}); keys != 100 || steps < 100 {
		t.Errorf("a copy of %d keys, each past the step, took %d steps; want 100 keys and 100 steps or more", keys, steps)
	}
	n := 0
	if keys, steps := copySteps(time.Hour, func() error {
		if n++; n%10 == 0 {
			return ErrStepEnd
		}
		return nil
	}); keys != 100 || steps != 11 {
		t.Errorf("a copy of %d keys, ending a step every 10, took %d steps; want 100 keys and 11 steps", keys, steps)
	}
}

// replayedRead is what one read of readsDuringWrites returned, at seq,
// the content of slots 0-3 the history replayed to seq leaves, and the
// history after seq.
type replayedRead struct {
	seq   uint64
	got   any
	want  map[int]map[string]string
	later []Mutation
}

// readsDuringWrites calls read (returning the seq it reflects and what it
// read) over and over while a writer writes random mutations of slots 0-3
// and apply rounds run at random moments, and returns each read with the
// history replayed to its seq.
func readsDuringWrites(t *testing.T, s *Store, read func() (uint64, any)) []replayedRead {
	t.Helper()
	ctx := testCtx(t)
	type batch struct {
		last uint64
		muts []Mutation
	}
	var history []batch
	written := make(chan struct{})
	// A read ended: the writer waits for one every 40 batches.
	readOne := make(chan struct{})
	go func() { // the writer
		defer close(written)
		rng := rand.New(rand.NewPCG(3, 4))
		for round := range 400 {
			if round%40 == 39 {
				<-readOne
			}
			muts := make([]Mutation, 1+rng.IntN(40))
			for i := range muts {
				muts[i] = randomMutation(rng, 300, fmt.Sprintf("v%d-%d", round, i))
			}
			last, err := s.Write(ctx, muts)
			if err != nil {
				t.Error(err)
				return
			}
			history = append(history, batch{last, muts})
		}
	}()
	applying := make(chan struct{})
	go func() { // rounds at random moments
		defer close(applying)
		for {
			select {
			case <-written:
				return
			default:
			}
			waitApplied(t, s)
		}
	}()
	var reads []replayedRead
	for done := false; !done; {
		select {
		case <-written:
			done = true
		default:
		}
		var r replayedRead
		r.seq, r.got = read()
		reads = append(reads, r)
		select {
		case readOne <- struct{}{}:
		case <-written:
			done = true
		}
	}
	<-applying
	for i := range reads {
		want := map[int]map[string]string{0: {}, 1: {}, 2: {}, 3: {}}
		for _, b := range history {
			for j, m := range b.muts {
				if b.last-uint64(len(b.muts)-1-j) > reads[i].seq {
					reads[i].later = append(reads[i].later, m)
					continue
				}
				applyToModel(want, m)
			}
		}
		reads[i].want = want
	}
	if len(reads) < 10 {
		t.Errorf("only %d reads were taken while the writer wrote", len(reads))
	}
	return reads
}

// applyToModel applies m to a model of a store's slots: slot, key, value.
func applyToModel(model map[int]map[string]string, m Mutation) {
	switch {
	case m.Mark:
	case m.Drop:
		model[m.Slot] = map[string]string{}
	case m.Delete:
		delete(model[m.Slot], string(m.Key))
	default:
		model[m.Slot][string(m.Key)] = string(m.Value)
	}
}

// randomRound writes up to 49 random mutations over keys keys (the model
// follows them), and one time in four waits for the applier to apply them.
func randomRound(t *testing.T, s *Store, rng *rand.Rand, model map[int]map[string]string, keys, round int) {
	t.Helper()
	muts := make([]Mutation, rng.IntN(50))
	for i := range muts {
		muts[i] = randomMutation(rng, keys, fmt.Sprintf("v%d-%d", round, i))
		applyToModel(model, muts[i])
	}
	if len(muts) > 0 {
		if _, err := s.Write(testCtx(t), muts); err != nil {
			t.Fatal(err)
		}
	}
	if rng.IntN(4) == 0 {
		waitApplied(t, s)
	}
}

// randomMutation is a put of value (73 %), a delete (25 %) or a drop of
// one of slots 0-3, over keys k000 up to keys.
func randomMutation(rng *rand.Rand, keys int, value string) Mutation {
	slot, key := rng.IntN(4), fmt.Appendf(nil, "k%03d", rng.IntN(keys))
	switch r := rng.IntN(100); {
	case r < 2:
		return Mutation{Slot: slot, Drop: true}
	case r < 27:
		return Mutation{Slot: slot, Key: key, Delete: true}
	}
	return Mutation{Slot: slot, Key: key, Value: []byte(value)}
}
