package ops

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The registry serves what the daemons register, in the text format, with
// the Go and process collectors.
func TestMetricsExposition(t *testing.T) {
	reg := NewRegistry()
	reg.Counter("thunder_test_events_total", "Events.").Add(3)
	ops := reg.Counters("thunder_test_requests_total", "Requests.", "op", "get", "put")
	ops[1].Inc()
	reg.Histograms("thunder_test_duration_seconds", "Durations.", "op", LatencyBuckets, "get")[0].Observe(0.002)
	reg.Histogram("thunder_test_size", "Sizes.", SizeBuckets).Observe(5)
	reg.Gauge("thunder_test_level", "Level.", func() float64 { return 7 })
	reg.CounterFunc("thunder_test_read_total", "Read.", func() float64 { return 9 })
	reg.GaugeSet("thunder_test_lag", "Lag.", []string{"follower"}, func(emit func(float64, ...string)) {
		emit(4, "n2")
		emit(5, "n3")
	})
	s, err := Serve("127.0.0.1:0", reg, func() error { return nil }, slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Addr()+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	for _, want := range []string{
		"# TYPE thunder_test_events_total counter\nthunder_test_events_total 3\n",
		`thunder_test_requests_total{op="get"} 0`,
		`thunder_test_requests_total{op="put"} 1`,
		"# TYPE thunder_test_duration_seconds histogram",
		`thunder_test_duration_seconds_count{op="get"} 1`,
		"thunder_test_size_sum 5",
		"thunder_test_level 7",
		"# TYPE thunder_test_read_total counter\nthunder_test_read_total 9",
		`thunder_test_lag{follower="n2"} 4`,
		`thunder_test_lag{follower="n3"} 5`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}
