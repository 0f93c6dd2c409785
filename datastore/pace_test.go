package datastore

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// A writer as fast as it can be, through a round that applies its keys
// evenly over ten seconds: the pacer lets the room under the limit run
// out only as the round ends, a little at a time, never all at once.
func TestPacerSpreadsTheRoomOverTheRound(t *testing.T) {
	const (
		round = 10 * time.Second
		keys  = 100_000
		limit = 128 << 20
		cost  = 64 << 10
	)
	t0 := time.Unix(1_000_000, 0)
	var p pacer
	r := p.begin(t0, keys)
	used := int64(64 << 20) // the round's own entries
	now, firstHalf, admitted := t0, int64(0), int64(0)
	var longest time.Duration
	for now.Before(t0.Add(round)) {
		r.progress(int(int64(keys) * int64(now.Sub(t0)) / int64(round)))
		if used > limit {
			// The limit holds the writer until the round ends.
			if at := now.Sub(t0); at < round*95/100 {
				t.Fatalf("the room ran out %s into a round of %s", at, round)
			}
			break
		}
		d, _ := p.delay(now, used, limit, cost)
		longest = max(longest, d)
		now = now.Add(d + time.Microsecond) // the writer's own time
		used += cost
		admitted += cost
		if now.Before(t0.Add(round / 2)) {
			firstHalf += cost
		}
	}
	room := int64(limit - 64<<20)
	if admitted < room*8/10 {
		t.Fatalf("admitted %d bytes of a room of %d over the round: paced too slow", admitted, room)
	}
	if firstHalf < admitted*4/10 || firstHalf > admitted*6/10 {
		t.Fatalf("admitted %d of %d bytes in the round's first half: not even", firstHalf, admitted)
	}
	if longest >= paceMaxWait {
		t.Fatalf("a writer waited %s at once", longest)
	}
}

// Writers slower than the pace never wait, bursts included; neither do
// writers while no round runs or before a round's first part if no round
// before gives an estimate. A write larger than the room waits at most
// paceMaxWait, and the round's end ends the wait.
func TestPacerLetsSlowWritersBe(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	var p pacer
	if d, _ := p.delay(t0, 0, 100, 1); d != 0 {
		t.Fatalf("no round: delay %s", d)
	}
	r := p.begin(t0, 1000)
	if d, _ := p.delay(t0.Add(time.Second), 99, 100, 1); d != 0 {
		t.Fatalf("no part committed: delay %s", d)
	}
	r.progress(100) // one second for a tenth: nine seconds left
	// 90 MB of room over nine seconds: 10 MB/s. Bursts of 100 kB every
	// 20 ms are half that.
	now, used := t0.Add(time.Second), int64(10e6)
	for range 100 {
		for range 10 {
			if d, _ := p.delay(now, used, 100e6, 10e3); d != 0 {
				t.Fatalf("a writer at half the pace waited %s", d)
			}
			used += 10e3
		}
		now = now.Add(20 * time.Millisecond)
		r.progress(100 + int(now.Sub(t0.Add(time.Second))/(10*time.Millisecond)))
	}
	var ended <-chan struct{}
	for range 2 {
		d, e := p.delay(now, 90e6, 100e6, 50e6)
		if d <= 0 || d > paceMaxWait {
			t.Fatalf("a write over the room waits %s, want at most %s", d, paceMaxWait)
		}
		ended = e
	}
	p.end(r, now, true)
	if err := waitPace(context.Background(), time.Hour, ended); err != nil {
		t.Fatal(err)
	}
	if d, _ := p.delay(now, 99e6, 100e6, 1e6); d != 0 {
		t.Fatalf("after the round: delay %s", d)
	}
}

// Before a round's first part, the last round's pace is the estimate if
// it was comparable; a small round's (its fsync alone) is not, nor is a
// failed round's.
func TestPacerBeforeTheFirstPart(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	var p pacer
	p.end(p.begin(t0, 1000), t0.Add(10*time.Second), true) // 10 ms a key
	r := p.begin(t0.Add(10*time.Second), 2000)
	// 20 s expected, 1 s gone: 19 s left for 19 MB of room, 1 MB/s.
	now := t0.Add(11 * time.Second)
	want := 100*time.Millisecond - paceBurst
	if d, _ := p.delay(now, 81e6, 100e6, 1e5); d != want {
		t.Fatalf("first write of the round waits %s, want %s", d, want)
	}
	p.end(r, t0.Add(11*time.Second), false)
	p.begin(t0.Add(12*time.Second), 2000)
	if d, _ := p.delay(t0.Add(13*time.Second), 81e6, 100e6, 1e5); d != want {
		t.Fatalf("after a failed round, the first write waits %s, want %s", d, want)
	}
	p.end(p.begin(t0, 10), t0.Add(10*time.Millisecond), true) // 1 ms a key
	p.begin(t0.Add(time.Second), 1000)
	if d, _ := p.delay(t0.Add(time.Second), 99e6, 100e6, 1e6); d != 0 {
		t.Fatalf("estimated from a round of 10 keys: delay %s", d)
	}
}

// Through a store: rounds of many parts, made slow, and a writer five
// times faster. Its writes are paced through each round; without the
// pacer it filled the overlay's room early in each round and then waited
// for the rest of the round, over half a second, once a round.
func TestWritesPacedThroughSlowRounds(t *testing.T) {
	var slow atomic.Bool
	obs := &rounds{}
	s, _ := newStore(t, Options{NoSync: true, Observer: obs, overlayLimit: 2 << 20, applyBytes: 1 << 20, applyDirty: 32 << 10,
		hooks: hooks{betweenApplyParts: func() error {
			if slow.Load() {
				time.Sleep(20 * time.Millisecond)
			}
			return nil
		}}})
	ctx := testCtx(t)
	value := make([]byte, 1000)
	// write returns how long WriteAsync took to queue n puts: the wait
	// the pacer or the limit imposed.
	write := func(n int) time.Duration {
		muts := make([]Mutation, n)
		for i := range muts {
			muts[i] = Mutation{Slot: rand.IntN(16), Key: []byte{byte(rand.IntN(256)), byte(rand.IntN(256))}, Value: value}
		}
		done := make(chan error, 1)
		start := time.Now()
		if err := s.WriteAsync(ctx, muts, func(_ uint64, err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
		queued := time.Since(start)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return queued
	}
	// Writes of 8 kB every millisecond: about five times the rounds' pace.
	const batch = 8
	paced := func() time.Duration {
		took := write(batch)
		time.Sleep(time.Millisecond)
		return took
	}
	// The tree first, so that every round writes into many pages.
	for range 32 {
		write(256)
	}
	waitApplied(t, s)
	// Rounds turn slow: the first ones are paced as fast as the last,
	// so the writes are timed once two have ended.
	slow.Store(true)
	for warm := obs.count() + 2; obs.count() < warm; {
		paced()
	}
	from := obs.count()
	var waits []time.Duration
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		waits = append(waits, paced())
	}
	applied, took := obs.since(from)
	if len(took) < 3 {
		t.Fatalf("%d rounds ended while writing: the test needs slow rounds to pace through", len(took))
	}
	slices.Sort(took)
	long := took[len(took)/2] / 2
	over := 0
	for _, w := range waits {
		if w > long {
			over++
		}
	}
	if over > 1 {
		t.Fatalf("%d of %d writes waited over %s, half of a round (rounds took %v)", over, len(waits), long, took)
	}
	sum := 0
	for _, n := range applied {
		sum += n
	}
	if written := len(waits) * batch; written < sum*4/10 {
		t.Fatalf("%d puts written while %d were applied: paced too slow", written, sum)
	}
}
