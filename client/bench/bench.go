package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thunderyurts/thunderyurts/wire"
)

// KV is the store under test. *client.Client satisfies it. Get reports an
// absent key with an error matching wire.ErrNotFound (client.ErrNotFound is
// the same sentinel). Both methods are called from many goroutines at once
// and may keep the slices they are given: the benchmark never reuses them.
type KV interface {
	Get(ctx context.Context, key []byte) ([]byte, error)
	Put(ctx context.Context, key, value []byte) error
}

// ErrInvalidConfig is returned by Run, wrapped with the offending flag, when
// Config is out of range; nothing has been sent to the store.
var ErrInvalidConfig = errors.New("bench: invalid config")

// Config describes one run. The zero value is not valid (it has no clients);
// start from DefaultConfig. Field comments name the thunderctl flag each one
// backs, which is also how validation errors refer to them.
type Config struct {
	// Clients is the number of concurrent client goroutines (--clients), >= 1.
	Clients int
	// Ops is the total number of operations across all clients (--ops).
	// 0 means the run is bounded by Duration alone.
	Ops int
	// Duration bounds the run in time (--duration); 0 means no time bound.
	// When both Ops and Duration are set the run stops at whichever comes
	// first; at least one must be set. Operations in flight when Duration
	// ends are completed and counted.
	Duration time.Duration
	// ValueSize is the length in bytes of every written value (--value-size), >= 0.
	ValueSize int
	// KeySize is the length in bytes of every key (--key-size); it must fit
	// "k" followed by the decimal index of the largest key.
	KeySize int
	// Keys is the size of the key space (--keys), >= 1. Each operation picks
	// a key uniformly at random from it.
	Keys int
	// ReadPercent is the share of operations that are reads (--reads), 0..100.
	ReadPercent int
	// KeyFilter, when not nil, narrows the key space to the keys it accepts
	// (--key-slots: the keys of some slots), each picked uniformly at random;
	// Run fails with ErrInvalidConfig when it accepts none.
	KeyFilter func(key []byte) bool
	// Progress, when not nil, receives a progress line redrawn in place with
	// "\r" about five times a second and cleared at the end. The caller
	// decides whether it is a terminal (see IsTerminal).
	Progress io.Writer
	// Seed makes the key and operation sequence reproducible; 0 picks a
	// seed from the clock.
	Seed int64
	// ReportInterval, when > 0, cuts the run into intervals of that length
	// (--report-interval) and reports each one's throughput and latency in
	// Result.Intervals: a trace over time shows stalls that the run's
	// percentiles hide.
	ReportInterval time.Duration
	// Report, when not nil and ReportInterval is set, receives one line per
	// interval as it ends.
	Report io.Writer
}

// maxFilteredKeys bounds the key space a KeyFilter narrows: Run lists the
// keys it accepts before it starts.
const maxFilteredKeys = 20_000_000

// DefaultConfig returns the defaults of `thunderctl bench`: 64 clients,
// 100,000 operations, 16-byte keys over a space of 100,000, 100-byte values,
// writes only.
func DefaultConfig() Config {
	return Config{
		Clients:   64,
		Ops:       100000,
		ValueSize: 100,
		KeySize:   16,
		Keys:      100000,
	}
}

func (cfg *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case cfg.Clients < 1:
		return bad("--clients must be >= 1, got %d", cfg.Clients)
	case cfg.Ops < 0:
		return bad("--ops must be >= 0, got %d", cfg.Ops)
	case cfg.Duration < 0:
		return bad("--duration must be >= 0, got %s", cfg.Duration)
	case cfg.Ops == 0 && cfg.Duration == 0:
		return bad("one of --ops or --duration must be set")
	case cfg.ValueSize < 0:
		return bad("--value-size must be >= 0, got %d", cfg.ValueSize)
	case cfg.Keys < 1:
		return bad("--keys must be >= 1, got %d", cfg.Keys)
	case cfg.ReadPercent < 0 || cfg.ReadPercent > 100:
		return bad("--reads must be between 0 and 100, got %d", cfg.ReadPercent)
	case cfg.ReportInterval < 0:
		return bad("--report-interval must be >= 0, got %s", cfg.ReportInterval)
	case cfg.KeyFilter != nil && cfg.Keys > maxFilteredKeys:
		return bad("--key-slots takes a key space of at most %d keys, got --keys %d", maxFilteredKeys, cfg.Keys)
	}
	if need := 1 + len(strconv.Itoa(cfg.Keys-1)); cfg.KeySize < need {
		return bad("--key-size %d cannot hold %d distinct keys, need >= %d", cfg.KeySize, cfg.Keys, need)
	}
	return nil
}

// Result is the outcome of a run. In JSON, durations are given in
// microseconds (p50_us, ...) and Elapsed in seconds.
type Result struct {
	// Ops counts finished operations, failed ones included.
	Ops uint64
	// Errors counts operations that failed (a missing key is not a failure).
	Errors uint64
	// NotFound counts reads of keys that did not exist.
	NotFound uint64
	// Reads and Writes split Ops by kind.
	Reads, Writes uint64
	// Elapsed is the wall time from the first operation to the last answer.
	Elapsed time.Duration
	// OpsPerSec is (Ops-Errors)/Elapsed: failures do not count as throughput.
	OpsPerSec float64
	// P50, P99, P999 and Max are latencies of operations that got an answer
	// (found or not), within 1 %; zero when there were none.
	P50, P99, P999, Max time.Duration
	// FirstError is the text of the first failure seen, empty when none.
	FirstError string
	// Intervals is the run cut by Config.ReportInterval, in order; nil
	// without one.
	Intervals []Interval
}

// Interval is one stretch of a run of Config.ReportInterval (the last one
// may be shorter). Latencies are of the operations that ended in it.
type Interval struct {
	// End is when the interval ended, from the start of the run.
	End time.Duration
	// Ops counts operations that ended in the interval; Errors the failed ones.
	Ops, Errors uint64
	// OpsPerSec is (Ops-Errors) over the interval's length.
	OpsPerSec float64
	// P50, P99 and Max are as in Result, for this interval alone.
	P50, P99, Max time.Duration
}

// worker is one client goroutine's private state: nothing in it is shared
// until the run ends, except the current interval's counts.
type worker struct {
	rng       *rand.Rand
	hist      *histogram
	valuePool []byte
	// mu guards cur, which the interval reporter swaps for a fresh one;
	// intervals says whether there is one.
	intervals bool
	mu        sync.Mutex
	cur       *intervalCounts
	ops       uint64
	errors    uint64
	notFound  uint64
	reads     uint64
	writes    uint64
	firstErr  error
	firstAt   time.Time
}

// run carries what the workers share.
type run struct {
	kv      KV
	cfg     Config
	keys    []int32      // the indexes KeyFilter accepts; nil without one
	started atomic.Int64 // operations claimed so far, also read by the progress line
	stop    atomic.Bool  // set when Duration has passed
}

// Run drives kv with cfg.Clients concurrent clients until cfg.Ops operations
// are done, cfg.Duration has passed, or ctx ends. It returns an error
// wrapping ErrInvalidConfig for a bad cfg. When ctx ends first, Run returns
// the partial result together with ctx's error; operations cut short by the
// cancellation are not counted.
func Run(ctx context.Context, kv KV, cfg Config) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	r := &run{kv: kv, cfg: cfg}
	if cfg.KeyFilter != nil {
		for i := range cfg.Keys {
			if i%65536 == 0 && ctx.Err() != nil {
				return &Result{}, ctx.Err()
			}
			if cfg.KeyFilter(formatKey(i, cfg.KeySize)) {
				r.keys = append(r.keys, int32(i))
			}
		}
		if len(r.keys) == 0 {
			return nil, fmt.Errorf("%w: none of the %d keys is in the slots asked for", ErrInvalidConfig, cfg.Keys)
		}
	}

	start := time.Now()
	if cfg.Duration > 0 {
		timer := time.AfterFunc(cfg.Duration, func() { r.stop.Store(true) })
		defer timer.Stop()
	}
	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	if cfg.Progress != nil {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			r.showProgress(start, progressDone)
		}()
	}

	workers := make([]*worker, cfg.Clients)
	for i := range workers {
		workers[i] = newWorker(seed+int64(i), cfg.ValueSize)
		if cfg.ReportInterval > 0 {
			workers[i].intervals, workers[i].cur = true, newIntervalCounts()
		}
	}
	var intervals []Interval
	if cfg.ReportInterval > 0 {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			intervals = r.reportIntervals(workers, start, progressDone)
		}()
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.loop(ctx, w)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(progressDone)
	progressWG.Wait()

	res := summarize(workers, elapsed)
	res.Intervals = intervals
	return res, ctx.Err()
}

func newWorker(seed int64, valueSize int) *worker {
	rng := rand.New(rand.NewSource(seed))
	// Values are windows into a per-worker random block, copied per write:
	// random enough to defeat compression, without a random fill per write.
	pool := make([]byte, valueSize+4096)
	rng.Read(pool)
	return &worker{rng: rng, hist: newHistogram(), valuePool: pool}
}

func (r *run) loop(ctx context.Context, w *worker) {
	ops := int64(r.cfg.Ops)
	for ctx.Err() == nil && !r.stop.Load() {
		if n := r.started.Add(1); ops > 0 && n > ops {
			return
		}
		key := formatKey(r.pickKey(w.rng), r.cfg.KeySize)
		read := w.rng.Intn(100) < r.cfg.ReadPercent
		var value []byte
		if !read {
			off := w.rng.Intn(len(w.valuePool) - r.cfg.ValueSize + 1)
			value = append([]byte(nil), w.valuePool[off:off+r.cfg.ValueSize]...)
		}

		begin := time.Now()
		var err error
		if read {
			_, err = r.kv.Get(ctx, key)
		} else {
			err = r.kv.Put(ctx, key, value)
		}
		took := time.Since(begin)

		if err != nil && ctx.Err() != nil {
			return // cut short by the caller: neither a result nor a failure
		}
		w.count(read, err, took, begin)
	}
}

// pickKey returns the index of a key picked uniformly at random from the
// key space, or from the keys KeyFilter accepts.
func (r *run) pickKey(rng *rand.Rand) int {
	if r.keys != nil {
		return int(r.keys[rng.Intn(len(r.keys))])
	}
	return rng.Intn(r.cfg.Keys)
}

func (w *worker) count(read bool, err error, took time.Duration, at time.Time) {
	if w.intervals {
		w.mu.Lock()
		w.cur.count(err == nil || read && errors.Is(err, wire.ErrNotFound), took)
		w.mu.Unlock()
	}
	w.ops++
	if read {
		w.reads++
	} else {
		w.writes++
	}
	switch {
	case err == nil:
	case read && errors.Is(err, wire.ErrNotFound):
		w.notFound++
	default:
		w.errors++
		if w.firstErr == nil {
			w.firstErr, w.firstAt = err, at
		}
		return
	}
	w.hist.record(took)
}

// formatKey returns "k" and the zero-padded decimal index, size bytes long.
func formatKey(index, size int) []byte {
	key := make([]byte, size)
	key[0] = 'k'
	for i := size - 1; i > 0; i-- {
		key[i] = byte('0' + index%10)
		index /= 10
	}
	return key
}

func summarize(workers []*worker, elapsed time.Duration) *Result {
	res := &Result{Elapsed: elapsed}
	hist := newHistogram()
	var first error
	var firstAt time.Time
	for _, w := range workers {
		res.Ops += w.ops
		res.Errors += w.errors
		res.NotFound += w.notFound
		res.Reads += w.reads
		res.Writes += w.writes
		hist.merge(w.hist)
		if w.firstErr != nil && (first == nil || w.firstAt.Before(firstAt)) {
			first, firstAt = w.firstErr, w.firstAt
		}
	}
	if first != nil {
		res.FirstError = first.Error()
	}
	if elapsed > 0 {
		res.OpsPerSec = float64(res.Ops-res.Errors) / elapsed.Seconds()
	}
	res.P50 = hist.quantile(0.50)
	res.P99 = hist.quantile(0.99)
	res.P999 = hist.quantile(0.999)
	res.Max = hist.max
	return res
}
