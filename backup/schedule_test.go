package backup_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/backup"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/clustertest"
	"github.com/thunderyurts/thunderyurts/daemon/coordinator"
	"github.com/thunderyurts/thunderyurts/internal/poll"
)

// A seconds-level schedule fires on the leader; after the leader is killed
// its successor goes on, no tick runs twice, and retention keeps exactly
// keep complete backups.
func TestScheduleAcrossLeaderChange(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{Slots: 8, ReplicationFactor: 1,
		Backups: func(cl *coord.Cluster) coordinator.Backups {
			return backup.NewScheduler(cl, "test", nil, slog.New(slog.DiscardHandler))
		}})
	c.StartCoordinator("c1")
	c.StartCoordinator("c2")
	c.StartNode("n1", "g1")
	c.WaitServing()
	fill(t, c.Client(), 50)
	dir := t.TempDir()
	store, err := backup.OpenStore(context.Background(), dir, backup.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	cl := c.Coord()
	if err := cl.SetBackupSchedule(ctx, coord.BackupSchedule{Cron: "* * * * * *", To: dir, Keep: 3}); err != nil {
		t.Fatal(err)
	}
	// Every second: wait for a few runs by each leader.
	finished := func(by string) int {
		runs, err := cl.BackupRuns(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range runs {
			if r.Coordinator == by && r.OK() {
				n++
			}
		}
		return n
	}
	leader := func() string {
		cs, err := cl.Coordinators(ctx)
		if err != nil || len(cs) == 0 {
			return ""
		}
		return cs[0].ID
	}
	first := leader()
	poll.Until(t, time.Minute, "four runs by the first leader", func() bool { return finished(first) >= 4 })
	c.Kill(first)
	var second string
	poll.Until(t, time.Minute, "a new leader", func() bool { second = leader(); return second != "" && second != first })
	poll.Until(t, time.Minute, "two runs by the second leader", func() bool { return finished(second) >= 2 })
	if err := cl.ClearBackupSchedule(ctx); err != nil {
		t.Fatal(err)
	}
	// Let a run in flight finish.
	poll.Until(t, time.Minute, "no run in flight", func() bool {
		runs, err := cl.BackupRuns(ctx)
		return err == nil && len(runs) > 0 && !runs[len(runs)-1].Finished.IsZero()
	})

	runs, err := cl.BackupRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range runs {
		if r.Err != "" && !strings.Contains(r.Err, "context canceled") {
			t.Errorf("run of %s failed: %s", r.Tick, r.Err)
		}
		if r.ID != "" && seen[r.ID] {
			t.Errorf("backup %s recorded twice", r.ID)
		}
		seen[r.ID] = true
	}
	list, err := backup.List(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	complete := 0
	for _, in := range list {
		if in.Complete {
			complete++
		}
	}
	if complete != 3 {
		t.Fatalf("%d complete backups after retention (keep 3): %+v", complete, list)
	}
}
