package coordinator

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/memcoord"
	"github.com/thunderyurts/thunderyurts/internal/poll"
	"github.com/thunderyurts/thunderyurts/wire"
)

// The history keeps the source's last report of its holds: how many ended
// and how long the last one paused, even when the report that ends the
// migration (from a new source primary) counts none.
func TestMigrationHistoryPauses(t *testing.T) {
	var asked atomic.Int64 // the driver's reads of p1's report
	f := migrationClusterProbed(t, fastMigrations, func(f *fakeCluster) func(context.Context, string) (*wire.NodeStatus, error) {
		return func(ctx context.Context, addr string) (*wire.NodeStatus, error) {
			if addr == addrOf("p1") {
				defer asked.Add(1)
			}
			return f.probe(ctx, addr)
		}
	})
	m := f.startPlan(coord.Move{From: "g1", To: "g2", First: 0, Last: 1})
	f.report("p2", target(m.ID, phaseCaughtUp, 50, 50))
	f.waitMigration("hold", func(m *coord.Migration) bool { return m.State == coord.MigrationHold })
	f.report("p1", source(m.ID, phaseFrozen, 50, digests(0, 1, 3)...))
	f.report("p2", target(m.ID, phaseCaughtUp, 50, 50, digests(0, 1, 3)...))
	f.waitMigration("switch", func(m *coord.Migration) bool { return m.State == coord.MigrationCleanup })
	released := source(m.ID, "serving", 0)
	released.Holds, released.LastPauseMicros = 3, 12_345
	f.report("p1", released)
	// Reads are one per step: the third from now began after the report
	// was set, once the step that read it was over.
	before := asked.Load()
	poll.Until(t, waitFor, "the driver reads the report", func() bool { return asked.Load() >= before+3 })
	// The last report comes from a primary that held none.
	f.report("p1", source(m.ID, phaseDropped, 0))
	f.waitNoMigration("migration removed")
	rec, err := f.observer.FinishedMigration(context.Background(), m.ID)
	if err != nil || rec.Holds != 3 || rec.LastPauseMs != 12.345 {
		t.Fatalf("history: %d holds, last pause %v ms, %v; want 3 holds, last pause 12.345 ms", rec.Holds, rec.LastPauseMs, err)
	}

	// The source's report that ends the migration carries its holds.
	n := f.startPlan(coord.Move{From: "g2", To: "g1", First: 8, Last: 8})
	f.report("p1", target(n.ID, phaseCaughtUp, 5, 5))
	f.waitMigration("hold", func(m *coord.Migration) bool { return m.ID == n.ID && m.State == coord.MigrationHold })
	f.report("p2", source(n.ID, phaseFrozen, 5, digests(8, 8, 1)...))
	f.report("p1", target(n.ID, phaseCaughtUp, 5, 5, digests(8, 8, 1)...))
	f.waitMigration("switch", func(m *coord.Migration) bool { return m.State == coord.MigrationCleanup })
	f.report("p2", &wire.MigrationStatus{Id: n.ID, Role: roleSource, Phase: phaseDropped, Holds: 1, LastPauseMicros: 800})
	f.waitNoMigration("second migration removed")
	rec, err = f.observer.FinishedMigration(context.Background(), n.ID)
	if err != nil || rec.Holds != 1 || rec.LastPause().Microseconds() != 800 {
		t.Fatalf("history: %d holds, last pause %s, %v; want 1 hold of 800µs", rec.Holds, rec.LastPause(), err)
	}
}

// planReads is a coordinator's session counting its reads of the
// rebalance plan: a full step of the driver reads it, a hold round does not.
type planReads struct {
	*memcoord.Conn
	n atomic.Int64
}

func (c *planReads) Get(ctx context.Context, path string) ([]byte, coord.Version, error) {
	if strings.HasSuffix(path, "/rebalance") {
		c.n.Add(1)
	}
	return c.Conn.Get(ctx, path)
}

// While a migration is in hold the driver polls in rounds that read only
// the slot table and the two primaries' reports: many reports are asked
// for with the plan read a few times at most, although full steps come
// only every 2 s.
func TestMigrationHoldRounds(t *testing.T) {
	cfg := fastMigrations
	cfg.MigrationPoll = 2 * time.Second
	var reads *planReads
	var sourceAsked atomic.Int64
	f := newFakeCluster(t)
	f.wrap = func(c *memcoord.Conn) coord.Conn { reads = &planReads{Conn: c}; return reads }
	f.coordinatorWith("c1", func(ctx context.Context, addr string) (*wire.NodeStatus, error) {
		if addr == addrOf("p1") {
			defer sourceAsked.Add(1)
		}
		return f.probe(ctx, addr)
	}, cfg)
	f.register("p1", "g1")
	f.register("p2", "g2")
	f.waitTable("slots assigned", func(t *coord.SlotTable) bool { return len(t.SlotsOf("g1")) == 8 })
	f.report("p1")
	m := f.startPlan(coord.Move{From: "g1", To: "g2", First: 0, Last: 1})
	f.report("p2", target(m.ID, phaseCaughtUp, 50, 50))
	f.waitMigration("hold", func(m *coord.Migration) bool { return m.State == coord.MigrationHold })
	f.report("p1", source(m.ID, "held", 0))

	const rounds = 20
	plan0, asked0 := reads.n.Load(), sourceAsked.Load()
	poll.Until(t, waitFor, "the driver asks the source in rounds", func() bool { return sourceAsked.Load() >= asked0+rounds })
	// A full step reads the plan at least twice; a second of rounds
	// ends with one, to look at the plan again.
	if got := reads.n.Load() - plan0; got > rounds/2 {
		t.Fatalf("the plan was read %d times while the source was asked %d times in hold", got, rounds)
	}
	f.report("p1", source(m.ID, phaseFrozen, 50, digests(0, 1, 3)...))
	f.report("p2", target(m.ID, phaseCaughtUp, 50, 50, digests(0, 1, 3)...))
	f.waitMigration("switch", func(m *coord.Migration) bool { return m.State == coord.MigrationCleanup })
}
