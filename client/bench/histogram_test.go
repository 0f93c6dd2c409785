package bench

import (
	"math"
	"math/rand"
	"slices"
	"testing"
	"time"
)

func TestBucketsAreContiguousAndTight(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<20; v++ {
		b := bucketOf(v)
		if b != prev && b != prev+1 {
			t.Fatalf("bucketOf(%d) = %d after %d: buckets skip", v, b, prev)
		}
		prev = b
	}
	rng := rand.New(rand.NewSource(1))
	for range 100000 {
		v := uint64(math.Exp(rng.Float64() * math.Log(float64(maxTracked))))
		mid := bucketMid(bucketOf(v))
		if rel := math.Abs(float64(mid)-float64(v)) / float64(v); rel > 0.01 {
			t.Fatalf("value %d reported as %d: error %.4f > 1%%", v, mid, rel)
		}
	}
	if got := bucketOf(uint64(maxTracked)); got != numBuckets-1 {
		t.Fatalf("maxTracked in bucket %d, want the last one %d", got, numBuckets-1)
	}
}

func TestQuantilesMatchSortedSamples(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	// Log-uniform from 100 ns to 10 s covers the whole range the histogram
	// is built for, in both its exact and its log-linear part.
	samples := make([]time.Duration, 50000)
	for i := range samples {
		samples[i] = time.Duration(math.Exp(math.Log(100) + rng.Float64()*(math.Log(1e10)-math.Log(100))))
	}
	// Two halves recorded separately and merged, as the workers' are.
	a, b := newHistogram(), newHistogram()
	for i, s := range samples {
		if i%2 == 0 {
			a.record(s)
		} else {
			b.record(s)
		}
	}
	a.merge(b)
	slices.Sort(samples)

	for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1} {
		want := samples[int(math.Ceil(q*float64(len(samples))))-1]
		got := a.quantile(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.01 {
			t.Errorf("q%.3f = %s, sorted samples say %s (error %.4f)", q, got, want, rel)
		}
	}
	if a.max != samples[len(samples)-1] {
		t.Errorf("max = %s, want %s", a.max, samples[len(samples)-1])
	}
}

func TestHistogramEdges(t *testing.T) {
	h := newHistogram()
	if got := h.quantile(0.5); got != 0 {
		t.Errorf("empty histogram p50 = %s, want 0", got)
	}
	h.record(2 * time.Minute) // beyond maxTracked: clamped but still the max
	h.record(-time.Second)
	if got := h.quantile(1); got != 2*time.Minute {
		t.Errorf("p100 = %s, want 2m (the exact max)", got)
	}
	if got := h.quantile(0.5); got != 0 {
		t.Errorf("p50 = %s, want 0 for a negative sample", got)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := newHistogram()
	for i := range b.N {
		h.record(time.Duration(i&0xfffff) * time.Microsecond)
	}
}
