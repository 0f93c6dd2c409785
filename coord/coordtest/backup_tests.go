package coordtest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

// testBackupSchedule: the schedule is set, replaced and cleared; each tick
// is claimed exactly once however many leaders race for it; outcomes are
// recorded and the history trimmed.
func testBackupSchedule(t *testing.T, s *suite) {
	ctx := testCtx(t)
	cl := newCluster(t, ctx, s.newConn(t), 8)
	_, err := cl.BackupSchedule(ctx)
	wantErr(t, err, coord.ErrNoNode, "schedule before any is set")
	for _, keep := range []int{3, 5} {
		must(t, cl.SetBackupSchedule(ctx, coord.BackupSchedule{Cron: "@daily", To: "/b", Keep: keep}), "set schedule")
		got, err := cl.BackupSchedule(ctx)
		must(t, err, "read schedule")
		if got.Keep != keep || got.Cron != "@daily" || got.To != "/b" {
			t.Fatalf("schedule = %+v, want keep %d", got, keep)
		}
	}

	tick := time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)
	const leaders = 4
	var wg sync.WaitGroup
	wins := make(chan string, leaders)
	for i := range leaders {
		conn := s.newConn(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := string(rune('a' + i))
			ok, err := view(conn, cl.Name()).ClaimBackupRun(ctx, coord.BackupRun{Tick: tick, Coordinator: id, Started: time.Now()})
			if err != nil {
				t.Errorf("claim: %v", err)
			}
			if ok {
				wins <- id
			}
		}()
	}
	wg.Wait()
	close(wins)
	var winners []string
	for id := range wins {
		winners = append(winners, id)
	}
	if len(winners) != 1 {
		t.Fatalf("tick claimed by %v, want exactly one", winners)
	}
	st, err := cl.BackupState(ctx)
	must(t, err, "state")
	if last, _ := st.LastFinished(); len(st.Runs) != 1 || last != nil {
		t.Fatalf("after a claim: %+v", st)
	}
	run := st.Runs[0]
	run.Finished, run.Err = time.Now(), "boom"
	must(t, cl.FinishBackupRun(ctx, run), "finish")
	ok := coord.BackupRun{Tick: tick.Add(time.Hour), Coordinator: "a", Started: time.Now()}
	claimed, err := cl.ClaimBackupRun(ctx, ok)
	must(t, err, "claim second tick")
	if !claimed {
		t.Fatal("second tick not claimed")
	}
	ok.Finished, ok.ID = time.Now(), "backup-1"
	must(t, cl.FinishBackupRun(ctx, ok), "finish second")
	st, err = cl.BackupState(ctx)
	must(t, err, "state")
	last, lastOK := st.LastFinished()
	if last == nil || last.ID != "backup-1" || lastOK == nil || lastOK.ID != "backup-1" || st.Runs[0].Err != "boom" {
		t.Fatalf("runs %+v: last %+v, last ok %+v", st.Runs, last, lastOK)
	}

	must(t, cl.TrimBackupRuns(ctx, 1), "trim")
	runs, err := cl.BackupRuns(ctx)
	must(t, err, "runs")
	if len(runs) != 1 || !runs[0].Tick.Equal(ok.Tick) {
		t.Fatalf("after trimming to 1: %+v", runs)
	}
	must(t, cl.ClearBackupSchedule(ctx), "clear")
	must(t, cl.ClearBackupSchedule(ctx), "clear again")
	if _, err := cl.BackupSchedule(ctx); !errors.Is(err, coord.ErrNoNode) {
		t.Fatalf("schedule after clear: %v", err)
	}
}
