package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/wire"
)

// memKV is an in-memory KV. Every failEvery-th call fails when failEvery > 0.
type memKV struct {
	mu        sync.Mutex
	data      map[string][]byte
	calls     atomic.Int64
	failEvery int64
	keySizes  sync.Map // key length -> struct{}
}

func newMemKV() *memKV { return &memKV{data: map[string][]byte{}} }

var errInjected = errors.New("injected failure")

func (m *memKV) fail() error {
	if n := m.calls.Add(1); m.failEvery > 0 && n%m.failEvery == 0 {
		return fmt.Errorf("call %d: %w", n, errInjected)
	}
	return nil
}

func (m *memKV) Get(ctx context.Context, key []byte) ([]byte, error) {
	m.keySizes.Store(len(key), struct{}{})
	if err := m.fail(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.data[string(key)]
	if !ok {
		return nil, fmt.Errorf("get %q: %w", key, wire.ErrNotFound)
	}
	return v, nil
}

func (m *memKV) Put(ctx context.Context, key, value []byte) error {
	m.keySizes.Store(len(key), struct{}{})
	if err := m.fail(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[string(key)] = value
	return nil
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Clients = 8
	cfg.Ops = 20000
	cfg.Keys = 1000
	cfg.Seed = 42
	return cfg
}

func runBounded(t testing.TB, kv KV, cfg Config) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Run(ctx, kv, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func TestRunCountsAndMix(t *testing.T) {
	kv := newMemKV()
	cfg := testConfig()
	cfg.ReadPercent = 30
	res := runBounded(t, kv, cfg)

	if res.Ops != uint64(cfg.Ops) {
		t.Errorf("Ops = %d, want exactly %d", res.Ops, cfg.Ops)
	}
	if res.Reads+res.Writes != res.Ops {
		t.Errorf("reads %d + writes %d != ops %d", res.Reads, res.Writes, res.Ops)
	}
	if share := float64(res.Reads) / float64(res.Ops); share < 0.27 || share > 0.33 {
		t.Errorf("read share %.3f, want about 0.30", share)
	}
	if res.Errors != 0 || res.FirstError != "" {
		t.Errorf("errors = %d (%q), want none", res.Errors, res.FirstError)
	}
	// Early reads hit keys not yet written; by the end most of the 1000 keys
	// exist, so some but not all reads miss.
	if res.NotFound == 0 || res.NotFound >= res.Reads {
		t.Errorf("NotFound = %d of %d reads, want some but not all", res.NotFound, res.Reads)
	}
	if len(kv.data) > cfg.Keys {
		t.Errorf("%d distinct keys written, key space is %d", len(kv.data), cfg.Keys)
	}
	for k, v := range kv.data {
		if len(k) != cfg.KeySize || len(v) != cfg.ValueSize {
			t.Fatalf("key %q (len %d) value len %d, want %d and %d", k, len(k), len(v), cfg.KeySize, cfg.ValueSize)
		}
	}
	if res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.P999 || res.P999 > res.Max {
		t.Errorf("latencies out of order: p50 %s p99 %s p99.9 %s max %s", res.P50, res.P99, res.P999, res.Max)
	}
	if res.OpsPerSec <= 0 || res.Elapsed <= 0 {
		t.Errorf("OpsPerSec %f, Elapsed %s: want positive", res.OpsPerSec, res.Elapsed)
	}
}

// A key filter narrows the key space: every operation uses a key it
// accepts, and over the run each of them comes up.
func TestRunKeyFilter(t *testing.T) {
	kv := newMemKV()
	cfg := testConfig()
	cfg.KeyFilter = func(key []byte) bool { return key[len(key)-1] == '7' } // 100 of the 1000
	runBounded(t, kv, cfg)
	if len(kv.data) != 100 {
		t.Errorf("%d distinct keys written, want the 100 the filter accepts", len(kv.data))
	}
	for k := range kv.data {
		if !cfg.KeyFilter([]byte(k)) {
			t.Fatalf("key %q written, the filter refuses it", k)
		}
	}
}

func TestRunReadsOfEmptyStoreAreNotFound(t *testing.T) {
	cfg := testConfig()
	cfg.ReadPercent = 100
	res := runBounded(t, newMemKV(), cfg)
	if res.NotFound != res.Ops || res.Errors != 0 || res.Writes != 0 {
		t.Errorf("got %+v, want every op a NotFound read and no errors", res)
	}
}

func TestRunCountsErrors(t *testing.T) {
	kv := newMemKV()
	kv.failEvery = 10
	cfg := testConfig()
	cfg.ReadPercent = 50
	res := runBounded(t, kv, cfg)
	if res.Ops != uint64(cfg.Ops) {
		t.Errorf("Ops = %d, want %d: failures still count as operations", res.Ops, cfg.Ops)
	}
	if want := uint64(cfg.Ops / 10); res.Errors != want {
		t.Errorf("Errors = %d, want %d", res.Errors, want)
	}
	if !strings.Contains(res.FirstError, errInjected.Error()) {
		t.Errorf("FirstError = %q, want the injected failure", res.FirstError)
	}
}

func TestRunDuration(t *testing.T) {
	cfg := testConfig()
	cfg.Ops = 0
	cfg.Duration = 500 * time.Millisecond
	var progress bytes.Buffer
	cfg.Progress = &syncWriter{w: &progress}
	res := runBounded(t, newMemKV(), cfg)
	if res.Ops == 0 {
		t.Fatal("no operations in a duration-bounded run")
	}
	out := progress.String()
	if !strings.Contains(out, "\r[") || !strings.Contains(out, "ops/s") {
		t.Errorf("progress output %q lacks a redrawn progress line", out)
	}
	// The last thing written clears the line: blanks between two "\r".
	last := out[strings.LastIndex(out[:len(out)-1], "\r"):]
	if strings.Trim(last, "\r ") != "" {
		t.Errorf("progress output ends with %q, want the line cleared", last)
	}
}

// syncWriter guards a buffer the progress goroutine writes while the test
// reads it only after Run returns; the race detector wants the ordering
// explicit.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// blockingKV answers nothing until its context ends.
type blockingKV struct{}

func (blockingKV) Get(ctx context.Context, key []byte) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (blockingKV) Put(ctx context.Context, key, value []byte) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, err := Run(ctx, blockingKV{}, testConfig())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
	if res == nil || res.Ops != 0 || res.Errors != 0 {
		t.Errorf("result %+v, want a partial result without the cut-short operations", res)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Clients = 0 }, "--clients must be >= 1"},
		{func(c *Config) { c.Ops, c.Duration = 0, 0 }, "one of --ops or --duration"},
		{func(c *Config) { c.Ops = -1 }, "--ops must be >= 0"},
		{func(c *Config) { c.ReadPercent = 101 }, "--reads must be between 0 and 100"},
		{func(c *Config) { c.Keys = 0 }, "--keys must be >= 1"},
		{func(c *Config) { c.ValueSize = -1 }, "--value-size must be >= 0"},
		{func(c *Config) { c.Keys, c.KeySize = 100000, 5 }, "need >= 6"},
		{func(c *Config) { c.KeyFilter = func([]byte) bool { return false } }, "none of the 100000 keys"},
		{func(c *Config) { c.Keys, c.KeyFilter = maxFilteredKeys+1, func([]byte) bool { return true } }, "--key-slots takes a key space of at most"},
	} {
		cfg := DefaultConfig()
		tc.mutate(&cfg)
		_, err := Run(context.Background(), newMemKV(), cfg)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want ErrInvalidConfig saying %q", err, tc.want)
		}
	}
	cfg := DefaultConfig()
	cfg.Keys, cfg.KeySize = 100000, 6 // k99999 fits exactly
	cfg.Ops = 100
	runBounded(t, newMemKV(), cfg)
}

func TestFormatKey(t *testing.T) {
	for _, tc := range []struct {
		index, size int
		want        string
	}{
		{0, 6, "k00000"},
		{42, 6, "k00042"},
		{99999, 6, "k99999"},
		{7, 16, "k000000000000007"},
	} {
		if got := string(formatKey(tc.index, tc.size)); got != tc.want {
			t.Errorf("formatKey(%d, %d) = %q, want %q", tc.index, tc.size, got, tc.want)
		}
	}
}

func TestPrint(t *testing.T) {
	res := &Result{
		Ops: 1000, Errors: 2, NotFound: 3, Reads: 400, Writes: 600,
		Elapsed: 2 * time.Second, OpsPerSec: 499,
		P50: 1500 * time.Microsecond, P99: 5 * time.Millisecond, P999: 8 * time.Millisecond, Max: 12 * time.Millisecond,
		FirstError: "put k01: unavailable",
	}
	var text bytes.Buffer
	if err := Print(&text, res, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1000 (reads 400, writes 600)", "499 ops/s", "p50 1.5ms", "p99.9 8ms", "first error: put k01: unavailable"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, text.String())
		}
	}

	var js bytes.Buffer
	if err := Print(&js, res, true); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatalf("JSON output does not parse: %v\n%s", err, js.String())
	}
	for key, want := range map[string]float64{
		"ops": 1000, "errors": 2, "not_found": 3, "reads": 400, "writes": 600,
		"elapsed_seconds": 2, "ops_per_sec": 499,
		"p50_us": 1500, "p99_us": 5000, "p999_us": 8000, "max_us": 12000,
	} {
		if got[key] != want {
			t.Errorf("JSON %s = %v, want %v", key, got[key], want)
		}
	}
	if got["first_error"] != res.FirstError {
		t.Errorf("JSON first_error = %v", got["first_error"])
	}
}

func TestIsTerminal(t *testing.T) {
	if IsTerminal(nil) {
		t.Error("nil file reported as a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("a regular file reported as a terminal")
	}
}

// BenchmarkRun measures the engine's own cost per operation against a store
// that does nothing, i.e. the ceiling it puts on any measurement.
func BenchmarkRun(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Ops = b.N
	cfg.Seed = 1
	b.ReportAllocs()
	res := runBounded(b, nopKV{}, cfg)
	b.ReportMetric(res.OpsPerSec, "ops/s")
}

type nopKV struct{}

func (nopKV) Get(ctx context.Context, key []byte) ([]byte, error) { return nil, nil }
func (nopKV) Put(ctx context.Context, key, value []byte) error    { return nil }

// The client is what thunderctl benchmarks; keep it a KV.
var _ KV = (*client.Client)(nil)

// With ReportInterval the run is cut into intervals that add up to the
// whole, each reported as a line and in JSON.
func TestReportIntervals(t *testing.T) {
	kv := newMemKV()
	kv.failEvery = 97
	cfg := testConfig()
	cfg.Ops = 0
	cfg.Duration = 300 * time.Millisecond
	cfg.ReportInterval = 50 * time.Millisecond
	var lines bytes.Buffer
	cfg.Report = &lines
	res := runBounded(t, kv, cfg)
	if len(res.Intervals) < 2 {
		t.Fatalf("%d intervals in a run of %s cut every %s", len(res.Intervals), cfg.Duration, cfg.ReportInterval)
	}
	var ops, errs uint64
	for i, iv := range res.Intervals {
		ops += iv.Ops
		errs += iv.Errors
		if i > 0 && iv.End <= res.Intervals[i-1].End {
			t.Fatalf("interval %d ends at %s, not after %s", i, iv.End, res.Intervals[i-1].End)
		}
		if iv.Ops > iv.Errors && (iv.P99 <= 0 || iv.P99 < iv.P50 || iv.Max < iv.P99 || iv.OpsPerSec <= 0) {
			t.Fatalf("interval %d: %+v", i, iv)
		}
	}
	if ops != res.Ops || errs != res.Errors {
		t.Fatalf("intervals count %d ops, %d errors; the run %d, %d", ops, errs, res.Ops, res.Errors)
	}
	if n := strings.Count(lines.String(), "\n"); n != len(res.Intervals) {
		t.Fatalf("%d lines for %d intervals:\n%s", n, len(res.Intervals), lines.String())
	}
	var out bytes.Buffer
	if err := Print(&out, res, true); err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Intervals []struct {
			Ops   uint64  `json:"ops"`
			P99us float64 `json:"p99_us"`
		} `json:"intervals"`
	}
	if err := json.Unmarshal(out.Bytes(), &decoded); err != nil || len(decoded.Intervals) != len(res.Intervals) {
		t.Fatalf("JSON intervals: %d, %v\n%s", len(decoded.Intervals), err, out.String())
	}
}
