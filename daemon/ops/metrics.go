package ops

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds a daemon's metrics (docs/metrics.md). It is the one place
// that knows the Prometheus client library: daemons register series through
// it and update them through Counter and Histogram. Every registry has the
// Go runtime and process collectors. The zero value is not usable; use
// NewRegistry.
type Registry struct {
	reg *prometheus.Registry
}

// Counter is a monotonically increasing series.
type Counter interface {
	Inc()
	Add(float64)
}

// Histogram counts observations into buckets.
type Histogram interface {
	Observe(float64)
}

// Bucket layouts shared by the daemons.
var (
	// LatencyBuckets span 100µs to about 13s, for request and disk times.
	LatencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 18)
	// SizeBuckets span 1 to about 65k, for entries or requests per batch.
	SizeBuckets = prometheus.ExponentialBuckets(1, 2, 17)
)

// NewRegistry returns a registry with the Go and process collectors.
func NewRegistry() *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Counter registers a counter.
func (r *Registry) Counter(name, help string) Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	r.reg.MustRegister(c)
	return c
}

// Counters registers a counter with one label and returns one child per
// value, in order, so the hot path indexes a slice instead of hashing
// label values.
func (r *Registry) Counters(name, help, label string, values ...string) []Counter {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
	r.reg.MustRegister(v)
	out := make([]Counter, len(values))
	for i, val := range values {
		out[i] = v.WithLabelValues(val)
	}
	return out
}

// CounterFunc registers a counter read when /metrics is scraped.
func (r *Registry) CounterFunc(name, help string, value func() float64) {
	r.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, value))
}

// Gauge registers a value read when /metrics is scraped.
func (r *Registry) Gauge(name, help string, value func() float64) {
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, value))
}

// GaugeSet registers a gauge whose labelled series are listed at each
// scrape: collect calls emit once per series, with one value per label.
// Series come and go with what collect sees (the followers of a primary).
func (r *Registry) GaugeSet(name, help string, labels []string, collect func(emit func(v float64, labelValues ...string))) {
	r.reg.MustRegister(&gaugeSet{desc: prometheus.NewDesc(name, help, labels, nil), collect: collect})
}

// Histogram registers a histogram.
func (r *Registry) Histogram(name, help string, buckets []float64) Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	r.reg.MustRegister(h)
	return h
}

// Histograms registers a histogram with one label and returns one child
// per value, in order (see Counters).
func (r *Registry) Histograms(name, help, label string, buckets []float64, values ...string) []Histogram {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, []string{label})
	r.reg.MustRegister(v)
	out := make([]Histogram, len(values))
	for i, val := range values {
		out[i] = v.WithLabelValues(val)
	}
	return out
}

// handler serves the registry in the exposition format the scraper asks for.
func (r *Registry) handler(log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

type gaugeSet struct {
	desc    *prometheus.Desc
	collect func(emit func(v float64, labelValues ...string))
}

func (g *gaugeSet) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *gaugeSet) Collect(ch chan<- prometheus.Metric) {
	g.collect(func(v float64, labelValues ...string) {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, labelValues...)
	})
}
