package bench

import (
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear in the HDR style: values below subBuckets
// nanoseconds get a bucket each, and every power of two above is split into
// subBuckets equal buckets, so a bucket is never wider than 1/subBuckets of
// its lower bound (under 0.8 % for 128). That keeps quantiles within 1 % with
// a fixed array of a few thousand counters and no allocation per sample.
const (
	subBits    = 7
	subBuckets = 1 << subBits
	// maxTracked is the largest latency with its own bucket; longer samples
	// land in the last bucket but still count toward Max exactly.
	maxTracked = 60 * time.Second
)

var numBuckets = bucketOf(uint64(maxTracked)) + 1

// histogram counts latencies. The zero value is not usable; use newHistogram.
// It is not safe for concurrent use: each client goroutine owns one and they
// are merged after the run.
type histogram struct {
	counts []uint64
	total  uint64
	max    time.Duration
}

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, numBuckets)}
}

// bucketOf maps a value to its bucket: for v >= subBuckets, the top subBits+1
// significant bits pick the bucket and the shift counts the octave.
func bucketOf(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return shift*subBuckets + int(v>>uint(shift))
}

// bucketMid returns the middle of bucket i's value range, halving the worst
// case error compared with reporting either bound.
func bucketMid(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	shift := i/subBuckets - 1
	low := uint64(i-shift*subBuckets) << uint(shift)
	return low + (uint64(1)<<uint(shift))/2
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if d > h.max {
		h.max = d
	}
	b := bucketOf(uint64(min(d, maxTracked)))
	h.counts[b]++
	h.total++
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// quantile returns the value at or below which a fraction q (0..1) of the
// samples fall, within 1 % (exactly the largest sample for q = 1), and 0 for
// an empty histogram. It never reports more than the largest sample.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(1, min(rank, h.total))
	if rank == h.total {
		return h.max // known exactly, and the last bucket may hold clamped samples
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketMid(i)), h.max)
		}
	}
	return h.max
}
