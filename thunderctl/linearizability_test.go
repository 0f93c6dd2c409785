package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
)

type kvInput struct {
	put   bool
	key   string
	value string
}

type kvOutput struct {
	value string // "" for a missing key
}

// kvModel is a register per key; puts that failed may have happened, so
// they are recorded as never returning (docs/replication.md, "Timeouts and indeterminate writes").
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in := input.(kvInput)
		if in.put {
			return true, in.value
		}
		return output.(kvOutput).value == state.(string), state
	},
	Equal: func(a, b interface{}) bool { return a == b },
	DescribeOperation: func(input, output interface{}) string {
		in := input.(kvInput)
		if in.put {
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) → %q", in.key, output.(kvOutput).value)
	},
}

// TestLinearizableAcrossFailover records concurrent gets and puts on a few
// keys while the primary is killed, and checks the history.
func TestLinearizableAcrossFailover(t *testing.T) {
	tc, cl := startGroup(t, 3)
	c := tc.client(cl)
	start := time.Now()
	var mu sync.Mutex
	var history []porcupine.Operation
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for id := 0; id < 8; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(id)))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				in := kvInput{key: fmt.Sprintf("lin-%d", rng.Intn(4)), put: rng.Intn(2) == 0, value: fmt.Sprintf("c%d-%d", id, n)}
				op := recordOp(c, id, in, start)
				if op != nil {
					mu.Lock()
					history = append(history, *op)
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	g := tc.waitGroup(cl, "g1", time.Second, func(*coord.Group) bool { return true })
	tc.procOf(g.Primary).Kill()
	tc.waitGroup(cl, "g1", sessionTimeout+10*time.Second, func(ng *coord.Group) bool { return ng.Primary != g.Primary && ng.Primary != "" })
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	res := porcupine.CheckOperationsTimeout(kvModel, history, 60*time.Second)
	t.Logf("checked %d operations across the failover: %s", len(history), res)
	if res == porcupine.Illegal {
		logShortestIllegal(t, history)
		t.Fatal("history is not linearizable")
	}
}

// logShortestIllegal shows, for each key whose history is not
// linearizable, the operations leading to the first violation.
func logShortestIllegal(t *testing.T, history []porcupine.Operation) {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range history {
		k := op.Input.(kvInput).key
		byKey[k] = append(byKey[k], op)
	}
	for k, ops := range byKey {
		slices.SortFunc(ops, func(a, b porcupine.Operation) int { return cmp.Compare(a.Return, b.Return) })
		if porcupine.CheckOperations(kvModel, ops) {
			continue
		}
		lo, hi := 1, len(ops)
		for lo < hi {
			if mid := (lo + hi) / 2; porcupine.CheckOperations(kvModel, ops[:mid]) {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		t.Logf("key %s: the first %d operations (by return time) are not linearizable; the last ones:", k, lo)
		for _, op := range ops[max(0, lo-12):lo] {
			t.Logf("  client %d call %.3fms return %.3fms %s", op.ClientId, float64(op.Call)/1e6, float64(op.Return)/1e6, kvModel.DescribeOperation(op.Input, op.Output))
		}
	}
}

// recordOp runs one operation and returns it for the history, or nil for
// a get that failed (it had no effect).
func recordOp(c *client.Client, id int, in kvInput, start time.Time) *porcupine.Operation {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	call := time.Since(start).Nanoseconds()
	op := &porcupine.Operation{ClientId: id, Input: in, Call: call}
	if in.put {
		err := c.Put(ctx, []byte(in.key), []byte(in.value))
		op.Output = kvOutput{}
		op.Return = time.Since(start).Nanoseconds()
		if err != nil {
			op.Return = math.MaxInt64
		}
		return op
	}
	v, err := c.Get(ctx, []byte(in.key))
	switch {
	case errors.Is(err, client.ErrNotFound):
	case err != nil:
		return nil
	}
	op.Output = kvOutput{value: string(v)}
	op.Return = time.Since(start).Nanoseconds()
	return op
}
