package datastore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
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
	r := p.begin(t0, keys, 0, 0)
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
	r := p.begin(t0, 1000, 0, 0)
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
	// After a quiet second, writes of a fortieth of the room each, at half
	// the pace: they do not wait either, however large.
	now = now.Add(time.Second)
	for range 3 {
		done := int(now.Sub(t0) / (10 * time.Millisecond))
		r.progress(done)
		left := time.Duration(1000-done) * 10 * time.Millisecond
		cost := (100e6 - used) / 40
		if d, _ := p.delay(now, used, 100e6, cost); d != 0 {
			t.Fatalf("a large write at half the pace waited %s", d)
		}
		used += cost
		now = now.Add(left / 20) // twice the write's step
	}
	// Writes larger than the room: the second waits, at most paceMaxWait.
	var ended <-chan struct{}
	for i := range 2 {
		d, e := p.delay(now, 90e6, 100e6, 50e6)
		if d > paceMaxWait || i == 1 && d <= 0 {
			t.Fatalf("write %d over the room waits %s, want at most %s", i+1, d, paceMaxWait)
		}
		ended = e
	}
	p.end(r, now, true)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the round's end does not end the writers' wait")
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
	// second is the wait of the second of two writes at now, each of cost
	// with used bytes taken: the first finds the clock idle.
	second := func(now time.Time, used, cost int64) time.Duration {
		p.delay(now, used, 100e6, cost)
		d, _ := p.delay(now, used, 100e6, cost)
		return d
	}
	p.end(p.begin(t0, 1000, 0, 0), t0.Add(10*time.Second), true) // 10 ms a key
	r := p.begin(t0.Add(10*time.Second), 2000, 0, 0)
	// 20 s expected, 1 s gone: 19 s left for 19 MB of room, 1 MB/s.
	const want = 100 * time.Millisecond
	if d := second(t0.Add(11*time.Second), 81e6, 1e5); d != want {
		t.Fatalf("the round's second write waits %s, want %s", d, want)
	}
	p.end(r, t0.Add(11*time.Second), false)
	p.begin(t0.Add(12*time.Second), 2000, 0, 0)
	if d := second(t0.Add(13*time.Second), 81e6, 1e5); d != want {
		t.Fatalf("after a failed round, the second write waits %s, want %s", d, want)
	}
	// After a round that frees less than a full one, the room is shorter
	// by the difference: past it, a write waits the most.
	p.end(p.begin(t0, 1000, 0, 0), t0.Add(10*time.Second), true)
	p.begin(t0.Add(10*time.Second), 1000, 40e6, 64e6)
	if d := second(t0.Add(11*time.Second), 80e6, 1); d != paceMaxWait {
		t.Fatalf("past the room left for a full round: delay %s, want %s", d, paceMaxWait)
	}
	p.end(p.begin(t0, 10, 0, 0), t0.Add(10*time.Millisecond), true) // 1 ms a key
	p.begin(t0.Add(time.Second), 1000, 0, 0)
	if d := second(t0.Add(time.Second), 99e6, 1e6); d != 0 {
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
	var peak int64
	for deadline := time.Now().Add(30 * time.Second); obs.count() < from+4; {
		if time.Now().After(deadline) {
			t.Fatalf("%d rounds in 30 s", obs.count()-from)
		}
		waits = append(waits, paced())
		s.mu.Lock()
		peak = max(peak, s.overlayBytes)
		s.mu.Unlock()
	}
	// The pace leaves the followers their headroom: paced to the whole
	// limit, the overlay reached it at each round's end.
	if most := s.overMax - s.overMax/paceHeadroom/2; peak > most {
		t.Fatalf("overlay reached %d bytes, into the followers' headroom (the pace aims at %d, the limit is %d)", peak, s.overMax-s.overMax/paceHeadroom, s.overMax)
	}
	applied, took := obs.since(from)
	slices.Sort(took)
	long := took[len(took)/2] / 2
	over := 0
	for _, w := range waits {
		if w > long {
			over++
		}
	}
	// Unpaced, about one write a round waits that long.
	if over > len(took)/3 {
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

// A write waiting for its pace is not queued when its context ends or the
// store closes meanwhile: the first returns the context's error at once
// (the wait would have ended by itself and queued the write), the second
// ErrClosed; neither write's callback runs, as it would once queued.
func TestPacedWaitEndsWithCtxOrClose(t *testing.T) {
	var hold atomic.Bool
	var once sync.Once
	blocked, release := make(chan struct{}), make(chan struct{})
	s, _ := newStore(t, Options{NoSync: true, overlayLimit: 4 << 20, applyBytes: 1 << 20, applyDirty: 32 << 10,
		hooks: hooks{betweenApplyParts: func() error {
			if hold.Load() {
				once.Do(func() { close(blocked) })
				<-release
			}
			return nil
		}}})
	var released sync.Once
	unblock := func() { released.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the store's Close, which waits for the round
	ctx := testCtx(t)
	value := make([]byte, 1000)
	muts := func(prefix string, n int) []Mutation {
		m := make([]Mutation, n)
		for i := range m {
			m[i] = Mutation{Slot: i % 16, Key: fmt.Appendf(nil, "%s-%d", prefix, i), Value: value}
		}
		return m
	}
	// A round of about 1,100 keys, held after its first part of about 30:
	// the pacer expects it to last many seconds more.
	hold.Store(true)
	if _, err := s.Write(ctx, muts("round", 1100)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-blocked:
	case <-ctx.Done():
		t.Fatal("no apply round began")
	}
	time.Sleep(100 * time.Millisecond)
	// Writes of a fifth of the room: the first passes as its own burst,
	// the second waits for its pace, up to 250 ms.
	if err := s.WriteAsync(ctx, muts("first", 512), func(uint64, error) {}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(30*time.Millisecond, cancel)
	if err := s.WriteAsync(wctx, muts("canceled", 512), func(uint64, error) { t.Error("a canceled write was queued") }); !errors.Is(err, context.Canceled) {
		t.Fatalf("paced write whose context ended: %v, want context.Canceled", err)
	}
	closing := make(chan error, 1)
	go func() {
		closing <- s.WriteAsync(ctx, muts("closed", 512), func(uint64, error) { t.Error("a write was queued after Close") })
	}()
	time.Sleep(30 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	if err := <-closing; !errors.Is(err, ErrClosed) {
		t.Fatalf("paced write through Close: %v, want ErrClosed", err)
	}
	unblock()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
