package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// jsonResult is Result as scripts read it: durations as plain numbers with
// their unit in the name, so no consumer has to parse Go duration strings.
type jsonResult struct {
	Ops            uint64         `json:"ops"`
	Errors         uint64         `json:"errors"`
	NotFound       uint64         `json:"not_found"`
	Reads          uint64         `json:"reads"`
	Writes         uint64         `json:"writes"`
	ElapsedSeconds float64        `json:"elapsed_seconds"`
	OpsPerSec      float64        `json:"ops_per_sec"`
	P50Micros      float64        `json:"p50_us"`
	P99Micros      float64        `json:"p99_us"`
	P999Micros     float64        `json:"p999_us"`
	MaxMicros      float64        `json:"max_us"`
	FirstError     string         `json:"first_error,omitempty"`
	Intervals      []jsonInterval `json:"intervals,omitempty"`
}

// jsonInterval is an Interval as scripts read it.
type jsonInterval struct {
	EndSeconds float64 `json:"end_seconds"`
	Ops        uint64  `json:"ops"`
	Errors     uint64  `json:"errors"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	P50Micros  float64 `json:"p50_us"`
	P99Micros  float64 `json:"p99_us"`
	MaxMicros  float64 `json:"max_us"`
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// MarshalJSON encodes r with snake_case keys, Elapsed in seconds
// (elapsed_seconds) and latencies in microseconds (p50_us, p99_us, p999_us,
// max_us), with the intervals, if any, likewise.
func (r *Result) MarshalJSON() ([]byte, error) {
	var ivs []jsonInterval
	for _, iv := range r.Intervals {
		ivs = append(ivs, jsonInterval{EndSeconds: iv.End.Seconds(), Ops: iv.Ops, Errors: iv.Errors, OpsPerSec: iv.OpsPerSec,
			P50Micros: micros(iv.P50), P99Micros: micros(iv.P99), MaxMicros: micros(iv.Max)})
	}
	return json.Marshal(jsonResult{
		Intervals:      ivs,
		Ops:            r.Ops,
		Errors:         r.Errors,
		NotFound:       r.NotFound,
		Reads:          r.Reads,
		Writes:         r.Writes,
		ElapsedSeconds: r.Elapsed.Seconds(),
		OpsPerSec:      r.OpsPerSec,
		P50Micros:      micros(r.P50),
		P99Micros:      micros(r.P99),
		P999Micros:     micros(r.P999),
		MaxMicros:      micros(r.Max),
		FirstError:     r.FirstError,
	})
}

// Print writes r to w: indented JSON when asJSON, otherwise a few aligned
// lines for people. It returns w's write error.
func Print(w io.Writer, r *Result, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	_, err := fmt.Fprintf(w,
		"ops:        %d (reads %d, writes %d)\n"+
			"errors:     %d\n"+
			"not found:  %d\n"+
			"elapsed:    %s\n"+
			"throughput: %.0f ops/s\n"+
			"latency:    p50 %s  p99 %s  p99.9 %s  max %s\n",
		r.Ops, r.Reads, r.Writes, r.Errors, r.NotFound,
		r.Elapsed.Round(time.Millisecond), r.OpsPerSec,
		roundLatency(r.P50), roundLatency(r.P99), roundLatency(r.P999), roundLatency(r.Max))
	if err != nil || r.FirstError == "" {
		return err
	}
	_, err = fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	return err
}

// roundLatency keeps three significant figures or so, which is all the
// histogram's 1 % precision supports.
func roundLatency(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= time.Microsecond:
		return d.Round(10 * time.Nanosecond)
	default:
		return d
	}
}
