package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// fakeCluster serves a route table that a test changes, and records the
// keys each address accepted; an address in refuse refuses every batch
// with MOVED.
type fakeCluster struct {
	mu       sync.Mutex
	routes   *coord.RouteTable
	refuse   map[string]bool
	accepted map[string][]string // by address
	refused  int
}

// table routes slots 0..slots-1, owner(slot) owning each, with the
// primary of group g at address "addr-g".
func table(version int64, slots int, owner func(int) string) *coord.RouteTable {
	rt := &coord.RouteTable{Table: &coord.SlotTable{Version: version, Owners: make([]string, slots)}, Groups: map[string]coord.GroupRoute{}}
	for s := range slots {
		g := owner(s)
		rt.Table.Owners[s] = g
		rt.Groups[g] = coord.GroupRoute{Name: g, Primary: "p-" + g, PrimaryAddr: "addr-" + g}
	}
	return rt
}

func (f *fakeCluster) routesOf(context.Context) (*coord.RouteTable, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.routes, nil
}

func (f *fakeCluster) load(_ context.Context, addr string, items []*wire.KeyValue) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse[addr] {
		f.refused++
		return &wire.Error{Code: wire.Code_MOVED, OwnerGroup: "?"}
	}
	for _, kv := range items {
		f.accepted[addr] = append(f.accepted[addr], string(kv.Key)+"="+string(kv.Value))
	}
	return nil
}

// A batch refused because its slots moved is routed again from a fresh
// table, split by the new owners, and every key is written once; progress
// counts each key once.
func TestLoaderRoutesRefusedBatchesAgain(t *testing.T) {
	const slots = 8
	f := &fakeCluster{routes: table(1, slots, func(int) string { return "g1" }), refuse: map[string]bool{"addr-g1": true}, accepted: map[string][]string{}}
	m := newMeter(1, nil)
	defer m.close()
	l := newLoader(context.Background(), f.routes, f.routesOf, f.load, m)
	// g1 gave its slots away: odd slots to g2, even ones to g3.
	f.routes = table(2, slots, func(s int) string { return fmt.Sprintf("g%d", 2+s%2) })
	const n = 20000 // several batches
	for i := range n {
		if err := l.put(fmt.Appendf(nil, "key-%d", i), fmt.Appendf(nil, "value-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.wait(); err != nil {
		t.Fatal(err)
	}
	if f.refused == 0 {
		t.Fatal("no batch went to the old owner: the test proves nothing")
	}
	seen := map[string]bool{}
	for addr, kvs := range f.accepted {
		for _, kv := range kvs {
			key, _, _ := strings.Cut(kv, "=")
			var i int
			fmt.Sscanf(key, "key-%d", &i)
			slot := coord.SlotOf([]byte(key), slots)
			if want := fmt.Sprintf("addr-g%d", 2+slot%2); addr != want {
				t.Fatalf("key %s of slot %d written at %s, want %s", key, slot, addr, want)
			}
			if kv != fmt.Sprintf("key-%d=value-%d", i, i) {
				t.Fatalf("pair %q", kv)
			}
			if seen[key] {
				t.Fatalf("key %s written twice", key)
			}
			seen[key] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("%d keys written, want %d", len(seen), n)
	}
	if p := m.close(); p.Keys != n {
		t.Fatalf("progress counted %d keys, want %d", p.Keys, n)
	}
}

// A batch refused for longer than the retry window fails the load with
// an error naming what refused it.
func TestLoaderGivesUpOnKeysNobodyServes(t *testing.T) {
	f := &fakeCluster{routes: table(1, 4, func(int) string { return "g1" }), refuse: map[string]bool{"addr-g1": true}, accepted: map[string][]string{}}
	m := newMeter(1, nil)
	defer m.close()
	l := newLoader(context.Background(), f.routes, f.routesOf, f.load, m)
	l.retryFor = 200 * time.Millisecond
	if err := l.put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	err := l.wait()
	if !errors.Is(err, wire.ErrMoved) || !strings.Contains(err.Error(), `1 key(s) ("k" among them) still refused after 200ms`) {
		t.Fatalf("wait: %v", err)
	}
}
