package datastore

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const benchKeys = 100_000

// benchKey fills a 16-byte key from n.
func benchKey(dst []byte, n uint64) []byte {
	binary.BigEndian.PutUint64(dst[:8], n*0x9e3779b97f4a7c15)
	binary.BigEndian.PutUint64(dst[8:16], n)
	return dst[:16]
}

// BenchmarkWriteParallel64 measures durable single-key writes from 64
// goroutines with AutoCommit: 16-byte keys drawn at random from 100,000,
// 100-byte values, real fsync. It also reports how fast the applier moved
// the entries into bbolt.
func BenchmarkWriteParallel64(b *testing.B) {
	for _, tc := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(tc.name, func(b *testing.B) {
			s, _ := newStore(b, Options{Slots: 1024, NoSync: tc.noSync, Logger: discard()})
			benchWriters(b, s, 64)
		})
	}
}

func benchWriters(b *testing.B, s *Store, writers int) {
	ctx := context.Background()
	value := make([]byte, 100)
	var next atomic.Int64
	commits := s.commits.Load()
	applied0 := s.AppliedSeq()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var kb [16]byte
			muts := make([]Mutation, 1)
			rng := rand.New(rand.NewPCG(uint64(next.Load()), 7))
			for {
				if next.Add(1) > int64(b.N) {
					return
				}
				n := rng.Uint64N(benchKeys)
				key := benchKey(kb[:], n)
				muts[0] = Mutation{Slot: int(n % 1024), Key: key, Value: value}
				if _, err := s.Write(ctx, muts); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	appliedAtEnd := s.AppliedSeq()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
	if c := s.commits.Load() - commits; c > 0 {
		b.ReportMetric(float64(b.N)/float64(c), "writes/commit")
	}
	// How far the applier lagged when the writers stopped, and how long it
	// took to catch up: its throughput is entries applied over the whole.
	b.ReportMetric(float64(s.LastSeq()-appliedAtEnd), "apply-lag")
	waitApplied(b, s)
	b.ReportMetric(float64(s.AppliedSeq()-applied0)/time.Since(start).Seconds(), "applied/s")
}

// preload writes n keys of 100-byte values into 1024 slots without fsync.
func preload(b *testing.B, s *Store, n int) {
	b.Helper()
	value := make([]byte, 100)
	muts := make([]Mutation, 0, 1000)
	for i := 0; i < n; {
		muts = muts[:0]
		for ; len(muts) < cap(muts) && i < n; i++ {
			muts = append(muts, Mutation{Slot: i % 1024, Key: benchKey(make([]byte, 16), uint64(i)), Value: value})
		}
		if _, err := s.Write(context.Background(), muts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetMany reads batches of 64 random existing keys; one op is one
// batch.
func BenchmarkGetMany(b *testing.B) {
	const keys = benchKeys
	s, _ := newStore(b, Options{Slots: 1024, NoSync: true, Logger: discard()})
	preload(b, s, keys)
	run := func(b *testing.B, rng *rand.Rand, refs []KeyRef) {
		for i := range refs {
			n := rng.Uint64N(keys)
			refs[i] = KeyRef{Slot: int(n % 1024), Key: benchKey(refs[i].Key[:16], n)}
		}
		for _, r := range s.GetMany(refs) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	newRefs := func() []KeyRef {
		refs := make([]KeyRef, 64)
		for i := range refs {
			refs[i].Key = make([]byte, 16)
		}
		return refs
	}
	b.Run("serial", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		refs := newRefs()
		b.ReportAllocs()
		start := time.Now()
		for b.Loop() {
			run(b, rng, refs)
		}
		b.ReportMetric(float64(b.N*64)/time.Since(start).Seconds(), "keys/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		start := time.Now()
		var seed atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(seed.Add(1), 2))
			refs := newRefs()
			for pb.Next() {
				run(b, rng, refs)
			}
		})
		b.ReportMetric(float64(b.N*64)/time.Since(start).Seconds(), "keys/s")
	})
}

// BenchmarkScan reads 1000 consecutive keys merged across 64 slots; one op
// is one Scan.
func BenchmarkScan(b *testing.B) {
	const keys = benchKeys
	s, _ := newStore(b, Options{Slots: 1024, NoSync: true, Logger: discard()})
	preload(b, s, keys)
	slots := make([]int, 64)
	for i := range slots {
		slots[i] = i * 16
	}
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	start := time.Now()
	total := 0
	for b.Loop() {
		var kb [16]byte
		kvs, err := s.Scan(context.Background(), slots, benchKey(kb[:], rng.Uint64N(keys)), nil, Limit{Entries: 1000})
		if err != nil {
			b.Fatal(err)
		}
		total += len(kvs)
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "keys/s")
}

// BenchmarkApply measures the applier alone. One op is one apply
// transaction of 100,000 mutations (one in ten a delete) of random keys
// among 100,000 in 1024 slots, 100-byte values, over a store preloaded with
// those keys: the mutations are written while the applier is held, then it
// applies them in one go, and only that is timed. cpu-ms/op is the
// process's CPU time meanwhile, nearly all of it the applier's: on a shared
// machine it varies far less than the time.
func BenchmarkApply(b *testing.B) {
	var hold sync.Mutex
	s, _ := newStore(b, Options{Slots: 1024, NoSync: true, Logger: discard(),
		hooks: hooks{beforeApply: func() error { hold.Lock(); hold.Unlock(); return nil }}})
	preload(b, s, benchKeys)
	waitApplied(b, s)
	rng := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, 100)
	muts := make([]Mutation, 0, 1000)
	var cpu time.Duration
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		hold.Lock()
		for range benchKeys / cap(muts) {
			muts = muts[:0]
			for range cap(muts) {
				n := rng.Uint64N(benchKeys)
				muts = append(muts, Mutation{Slot: int(n % 1024), Key: benchKey(make([]byte, 16), n), Value: value, Delete: rng.IntN(10) == 0})
			}
			if _, err := s.Write(context.Background(), muts); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		cpu0 := cpuTime(b)
		hold.Unlock()
		waitApplied(b, s)
		cpu += cpuTime(b) - cpu0
	}
	b.ReportMetric(float64(b.N*benchKeys)/b.Elapsed().Seconds(), "applied/s")
	b.ReportMetric(float64(cpu.Microseconds())/1e3/float64(b.N), "cpu-ms/op")
}

// cpuTime returns the CPU time the process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
