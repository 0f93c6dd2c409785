package coordinator

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/thunderyurts/thunderyurts/coord"
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
