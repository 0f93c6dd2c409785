package admin

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

// A schedule whose newest finished run failed is a warning naming the error
// and the last success; a run whose coordinator is gone is not in flight.
func TestBackupStatusWarnsWhenTheScheduleFails(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	st := &coord.BackupState{
		Schedule: &coord.BackupSchedule{Cron: "@daily", To: "/b", Keep: 3},
		Runs: []coord.BackupRun{
			{Tick: t0, Coordinator: "c1", Started: t0, Finished: t0.Add(time.Minute), ID: "good"},
			{Tick: t0.Add(24 * time.Hour), Coordinator: "c1", Started: t0, Finished: t0.Add(25 * time.Hour), Err: "backup store /b: put x: read-only file system"},
			{Tick: t0.Add(48 * time.Hour), Coordinator: "gone", Started: t0.Add(48 * time.Hour)},
		},
	}
	var warnings []string
	warn := func(format string, args ...any) { warnings = append(warnings, fmt.Sprintf(format, args...)) }
	b := buildBackupStatus(st, []coord.CoordinatorInfo{{ID: "c1"}}, warn)
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "backup schedule failing: backup store /b: put x: read-only file system") ||
		!strings.Contains(warnings[0], "last success: 2026-12-02T03:01:00Z") {
		t.Fatalf("warnings %q", warnings)
	}
	if b.Running != nil || b.LastSuccess.ID != "good" || b.Last.Err == "" {
		t.Fatalf("status %+v", b)
	}
	warnings = nil
	st.Runs = st.Runs[:1]
	if b := buildBackupStatus(st, nil, warn); len(warnings) != 0 || b.Last.ID != "good" {
		t.Fatalf("after a good run: %q, %+v", warnings, b)
	}
	var out bytes.Buffer
	if err := PrintBackupSchedule(&out, BuildBackupSchedule(st, nil), FormatTable); err != nil || !strings.Contains(out.String(), "ok: good") {
		t.Fatalf("schedule table: %v\n%s", err, out.String())
	}
}
