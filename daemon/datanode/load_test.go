package datanode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/internal/poll"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// loadItems are n keys with 100-byte values, spread over every slot.
func loadItems(prefix string, n int) []*wire.KeyValue {
	items := make([]*wire.KeyValue, n)
	for i := range items {
		items[i] = &wire.KeyValue{Key: fmt.Appendf(nil, "%s-%04d", prefix, i), Value: bytes.Repeat([]byte{byte(i)}, 100)}
	}
	return items
}

// A Load is answered once every in-sync replica holds the batch durably:
// the secondary has it when the answer comes; while an in-sync secondary
// does not acknowledge, no answer comes.
func TestLoadAnswersOnceTheISRHoldsIt(t *testing.T) {
	c := newTestCluster(t)
	a := c.startNode(nodeDir(t, "a"), nil, func(cfg *Config) { cfg.MaxLag = time.Minute })
	c.waitGroup("a leads", func(g *coord.Group) bool { return g.Primary == a.ID() })
	b := c.startNode(nodeDir(t, "b"), nil, nil)
	c.waitServing(a, b)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	items := loadItems("k", 500)
	if err := (nodeclient.Nodes{}).Load(ctx, a.Addr(), items); err != nil {
		t.Fatal(err)
	}
	seq := a.store().LastSeq() // nothing else writes
	if d := b.store().DurableSeq(); d < seq {
		t.Fatalf("answered with the batch at seq %d, the in-sync secondary durable to %d only", seq, d)
	}
	slots := a.store().Slots()
	for _, kv := range items {
		if v, err := a.store().Get(coord.SlotOf(kv.Key, slots), kv.Key); err != nil || !bytes.Equal(v, kv.Value) {
			t.Fatalf("key %s after the load: %q, %v", kv.Key, v, err)
		}
	}

	// A stream under b's name that never acknowledges replaces b's own,
	// then b stops: b stays in the in-sync set (MaxLag is long), connected,
	// acknowledging nothing more.
	fake := openFake(t, a.Addr(), &wire.Hello{Group: "g1", NodeId: b.ID(), Epoch: c.group().Epoch})
	eventually(t, "the silent stream attached", func() bool {
		p := a.state.Load().primary
		p.mu.Lock()
		defer p.mu.Unlock()
		m := p.members[b.ID()]
		return m != nil && m.connected && m.stream > 1
	})
	b.Close()
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	if err := (nodeclient.Nodes{}).Load(short, a.Addr(), loadItems("late", 10)); err == nil {
		t.Fatal("a load was answered while an in-sync member lacked it")
	}
	select {
	case err := <-fake.closed:
		t.Fatalf("the silent stream ended (%v): the check above proved nothing", err)
	default:
	}
	if g := c.group(); !slices.Contains(g.ISR, b.ID()) {
		t.Fatalf("b left the in-sync set (%v): the check above proved nothing", g.ISR)
	}
}

// A batch with one key of a slot the node does not serve is refused
// whole, nothing of it written: MOVED for another group's slot (naming
// it), NOT_PRIMARY on a secondary, UNAVAILABLE for a slot a migration
// holds.
func TestLoadRefusesSlotsItDoesNotServe(t *testing.T) {
	_, a, b := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	items := loadItems("k", 64)
	slots := a.store().Slots()
	moved, held := coord.SlotOf(items[0].Key, slots), coord.SlotOf(items[1].Key, slots)
	if moved == held {
		t.Fatal("test keys share a slot")
	}
	nodes := nodeclient.Nodes{}
	before := a.store().LastSeq()

	if err := nodes.Load(ctx, b.Addr(), items); !errors.Is(err, wire.ErrNotPrimary) {
		t.Fatalf("load on the secondary: %v, want NOT_PRIMARY", err)
	}

	a.update(func(s *state) {
		tb := s.table.Clone()
		tb.Version++
		tb.Owners[moved] = "g2"
		s.table = tb
	})
	err := nodes.Load(ctx, a.Addr(), items)
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.Code_MOVED || we.OwnerGroup != "g2" {
		t.Fatalf("load with a key of another group's slot: %v, want MOVED to g2", err)
	}
	if got := a.store().LastSeq(); got != before {
		t.Fatalf("a refused batch was written: log %d → %d", before, got)
	}

	a.update(func(s *state) {
		tb := s.table.Clone()
		tb.Version++
		tb.Owners[moved] = "g1"
		tb.Migrations = []coord.Migration{{ID: "m1", From: "g1", To: "g2", First: held, Last: held, State: coord.MigrationHold, Since: time.Now()}}
		s.table = tb
	})
	if err := nodes.Load(ctx, a.Addr(), items); !errors.Is(err, wire.ErrUnavailable) {
		t.Fatalf("load with a key of a held slot: %v, want UNAVAILABLE", err)
	}
	// The hold writes its barrier, a mark: no key of the batch.
	for _, kv := range items {
		if _, err := a.store().Get(coord.SlotOf(kv.Key, slots), kv.Key); err == nil {
			t.Fatalf("key %s of a refused batch was written", kv.Key)
		}
	}

	a.update(func(s *state) {
		tb := s.table.Clone()
		tb.Version++
		tb.Migrations = nil
		s.table = tb
	})
	// The node ends its hold when its migration loop sees the table, so
	// the load is retried as the refusal asks.
	poll.UntilNil(t, patience, func() error {
		if err := nodes.Load(ctx, a.Addr(), items); err != nil {
			return fmt.Errorf("load once every slot is served: %w", err)
		}
		return nil
	})
}
