package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/thunderyurts/thunderyurts/client"
)

// faultCount reads a repetition count of the fault tests from the
// environment (CI keeps the defaults small; a soak run raises them).
func faultCount(t *testing.T, env string, def int) int {
	t.Helper()
	s := os.Getenv(env)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive count", env, s)
	}
	return n
}

// opLog records every call a set of workers makes through one long-lived
// client, for porcupine, for counting failed calls, and for finding when
// the client resumed after a fault. Calls carry no deadline of their own:
// the client's timeout bounds them, as it bounds an application's.
type opLog struct {
	c      *client.Client
	start  time.Time
	mu     sync.Mutex
	ops    []porcupine.Operation
	failed []string
	stop   chan struct{}
	halted sync.Once
	wg     sync.WaitGroup
}

// startOpLog runs workers on keys keys until halt. Worker 0 reads each key
// right after writing it, so a read follows a new primary's first write;
// the others mix gets and puts at random.
func startOpLog(t *testing.T, c *client.Client, workers, keys int) *opLog {
	l := &opLog{c: c, start: time.Now(), stop: make(chan struct{})}
	for id := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewSource(int64(id)))
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				in := kvInput{key: fmt.Sprintf("fk-%d", rng.Intn(keys)), put: rng.Intn(2) == 0, value: fmt.Sprintf("c%d-%d", id, n)}
				if id == 0 {
					in.put = true
				}
				if l.do(id, in) && id == 0 {
					l.do(id, kvInput{key: in.key})
				}
			}
		}()
	}
	t.Cleanup(l.halt)
	return l
}

func (l *opLog) halt() { l.halted.Do(func() { close(l.stop); l.wg.Wait() }) }

// do runs one call and records it: a failed put may still take effect, so
// it never returns in the history; a failed get had no effect and is left
// out. Both count as failed calls.
func (l *opLog) do(id int, in kvInput) bool {
	op := porcupine.Operation{ClientId: id, Input: in, Output: kvOutput{}, Call: time.Since(l.start).Nanoseconds()}
	var err error
	if in.put {
		err = l.c.Put(context.Background(), []byte(in.key), []byte(in.value))
	} else {
		var v []byte
		if v, err = l.c.Get(context.Background(), []byte(in.key)); errors.Is(err, client.ErrNotFound) {
			err = nil
		}
		op.Output = kvOutput{value: string(v)}
	}
	op.Return = time.Since(l.start).Nanoseconds()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed = append(l.failed, fmt.Sprintf("%s at %.3fs: %v", kvModel.DescribeOperation(in, op.Output), float64(op.Call)/1e9, err))
		if !in.put {
			return false
		}
		op.Return = math.MaxInt64
	}
	l.ops = append(l.ops, op)
	return err == nil
}

// okPutsAfter counts the puts acknowledged after at.
func (l *opLog) okPutsAfter(at time.Time) int {
	since := at.Sub(l.start).Nanoseconds()
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, op := range l.ops {
		if op.Input.(kvInput).put && op.Return != math.MaxInt64 && op.Return > since {
			n++
		}
	}
	return n
}

// waitProgress waits until n puts were acknowledged after now.
func (l *opLog) waitProgress(t *testing.T, n int, within time.Duration) {
	t.Helper()
	from := time.Now()
	eventually(t, within, func() error {
		if got := l.okPutsAfter(from); got < n {
			return fmt.Errorf("%d of %d puts acknowledged", got, n)
		}
		return nil
	})
}

// resumedAfter is how long after a fault at `at` the first put was
// acknowledged by someone else than the faulty node: the first ack
// returned later than settle after the fault (a frozen or cut-off node
// acknowledges nothing after that).
func (l *opLog) resumedAfter(at time.Time, settle time.Duration) (time.Duration, bool) {
	since := at.Add(settle).Sub(l.start).Nanoseconds()
	l.mu.Lock()
	defer l.mu.Unlock()
	first := int64(math.MaxInt64)
	for _, op := range l.ops {
		if op.Input.(kvInput).put && op.Return > since && op.Return < first {
			first = op.Return
		}
	}
	if first == math.MaxInt64 {
		return 0, false
	}
	return l.start.Add(time.Duration(first)).Sub(at), true
}

// waitResumed waits for the first acknowledgement after a fault at `at`.
func (l *opLog) waitResumed(t *testing.T, at time.Time, within time.Duration) time.Duration {
	t.Helper()
	var took time.Duration
	eventually(t, within, func() error {
		var ok bool
		if took, ok = l.resumedAfter(at, 100*time.Millisecond); !ok {
			return errors.New("no put acknowledged since the fault")
		}
		return nil
	})
	return took
}

// check halts the workers and checks the whole history: linearizable
// (porcupine) and, counted on its own, no stale read.
func (l *opLog) check(t *testing.T) {
	t.Helper()
	l.halt()
	l.mu.Lock()
	defer l.mu.Unlock()
	reads := 0
	for _, op := range l.ops {
		if !op.Input.(kvInput).put {
			reads++
		}
	}
	stale := staleReads(l.ops)
	t.Logf("history: %d operations (%d reads) over %s; %d failed calls; %d stale reads",
		len(l.ops), reads, time.Since(l.start).Round(time.Second), len(l.failed), stale)
	for _, f := range l.failed[:min(len(l.failed), 10)] {
		t.Logf("  failed: %s", f)
	}
	if stale > 0 {
		t.Errorf("%d stale reads", stale)
	}
	switch res := porcupine.CheckOperationsTimeout(kvModel, l.ops, 3*time.Minute); res {
	case porcupine.Illegal:
		logShortestIllegal(t, l.ops)
		path := dumpHistory(t, l.ops)
		if porcupine.CheckOperationsTimeout(kvModel, appliedTwice(l.ops), 3*time.Minute) == porcupine.Ok {
			// Idempotent writes rule this out: name it, it points at the
			// tags (docs/replication.md, "Idempotent writes").
			t.Fatalf("history is not linearizable: a put the client retried took effect twice (its value, another put's, its value again); "+
				"it is linearizable only if a put may apply twice within its call; it began at %s and is in %s",
				l.start.Format("15:04:05.000"), path)
		}
		t.Fatalf("history is not linearizable; it began at %s and is in %s", l.start.Format("15:04:05.000"), path)
	case porcupine.Unknown:
		t.Fatal("porcupine could not decide within its timeout")
	}
}

// appliedTwice lets every acknowledged put take effect twice within its
// call, as one would if a retry after a failover were written again
// although its first attempt had reached the log: check uses it to name
// that failure.
func appliedTwice(ops []porcupine.Operation) []porcupine.Operation {
	out := slices.Clone(ops)
	for _, op := range ops {
		if op.Input.(kvInput).put && op.Return != math.MaxInt64 {
			out = append(out, op)
		}
	}
	return out
}

// dumpHistory writes the history, one operation a line in call order, to
// a file that outlives the test, and returns its path.
func dumpHistory(t *testing.T, ops []porcupine.Operation) string {
	ops = slices.Clone(ops)
	slices.SortFunc(ops, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
	var b strings.Builder
	for _, op := range ops {
		ret := "never"
		if op.Return != math.MaxInt64 {
			ret = fmt.Sprintf("%.3fms", float64(op.Return)/1e6)
		}
		fmt.Fprintf(&b, "client %d call %.3fms return %s %s\n", op.ClientId, float64(op.Call)/1e6, ret, kvModel.DescribeOperation(op.Input, op.Output))
	}
	f, err := os.CreateTemp("", "thunder-history-*.txt")
	if err == nil {
		_, err = f.WriteString(b.String())
		f.Close()
	}
	if err != nil {
		t.Logf("write the history: %v", err)
		return "no file"
	}
	return f.Name()
}

// staleReads counts reads that returned a value overwritten before they
// were sent: some other put began after the one they saw was acknowledged
// and was itself acknowledged before the read began (for a missing key:
// any put acknowledged before the read began).
func staleReads(ops []porcupine.Operation) int {
	type putOp struct{ call, ret int64 }
	puts := map[string][]putOp{}                // acknowledged puts by key, sorted by call below
	byValue := map[string]porcupine.Operation{} // value → its put
	for _, op := range ops {
		in := op.Input.(kvInput)
		if in.put {
			byValue[in.value] = op
			if op.Return != math.MaxInt64 {
				puts[in.key] = append(puts[in.key], putOp{op.Call, op.Return})
			}
		}
	}
	// minRet[k][i] is the earliest return among puts[k][i:].
	minRet := map[string][]int64{}
	for k, ps := range puts {
		slices.SortFunc(ps, func(a, b putOp) int { return cmp.Compare(a.call, b.call) })
		m := make([]int64, len(ps)+1)
		m[len(ps)] = math.MaxInt64
		for i := len(ps) - 1; i >= 0; i-- {
			m[i] = min(m[i+1], ps[i].ret)
		}
		minRet[k] = m
	}
	stale := 0
	for _, op := range ops {
		in := op.Input.(kvInput)
		if in.put {
			continue
		}
		ps, m := puts[in.key], minRet[in.key]
		after := int64(-1) // puts that began after this instant supersede the value read
		if v := op.Output.(kvOutput).value; v != "" {
			p, ok := byValue[v]
			if !ok || p.Return == math.MaxInt64 {
				continue // an unacknowledged put has no end to be superseded after
			}
			after = p.Return
		}
		i, _ := slices.BinarySearchFunc(ps, after+1, func(p putOp, t int64) int { return cmp.Compare(p.call, t) })
		if m != nil && m[i] < op.Call {
			stale++
		}
	}
	return stale
}
