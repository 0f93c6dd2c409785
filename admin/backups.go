package admin

import (
	"fmt"
	"slices"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

// BackupStatus is the backup schedule's part of `admin status`.
type BackupStatus struct {
	// Schedule is nil when no schedule is set.
	Schedule *coord.BackupSchedule `json:"schedule"`
	// Running is the scheduled run in flight, if any.
	Running *coord.BackupRun `json:"running,omitempty"`
	// Last is the newest finished run, LastSuccess the newest successful one.
	Last        *coord.BackupRun `json:"last,omitempty"`
	LastSuccess *coord.BackupRun `json:"last_success,omitempty"`
}

// buildBackupStatus summarises st; coordinators are the running ones, so a
// run whose coordinator is gone counts as interrupted, not in flight. It
// warns when the newest finished run failed: retention deletes nothing
// then, and the last good backup grows old.
func buildBackupStatus(st *coord.BackupState, coordinators []coord.CoordinatorInfo, warn func(string, ...any)) *BackupStatus {
	if st == nil {
		return nil
	}
	b := &BackupStatus{Schedule: st.Schedule}
	b.Last, b.LastSuccess = st.LastFinished()
	if n := len(st.Runs); n > 0 {
		newest := st.Runs[n-1]
		alive := slices.ContainsFunc(coordinators, func(c coord.CoordinatorInfo) bool { return c.ID == newest.Coordinator })
		if newest.Finished.IsZero() && alive {
			b.Running = &newest
		}
	}
	if b.Schedule != nil && b.Last != nil && b.Last.Err != "" {
		since := "never"
		if b.LastSuccess != nil {
			since = b.LastSuccess.Finished.UTC().Format(time.RFC3339)
		}
		warn("backup schedule failing: %s (last success: %s)", b.Last.Err, since)
	}
	return b
}

// backupLine is the one table line about backups.
func backupLine(b *BackupStatus) string {
	if b == nil || b.Schedule == nil {
		return "backups: no schedule"
	}
	line := fmt.Sprintf("backups: %q to %s, keep %d", b.Schedule.Cron, b.Schedule.To, b.Schedule.Keep)
	if b.Running != nil {
		line += fmt.Sprintf("; running since %s", b.Running.Started.UTC().Format(time.RFC3339))
	}
	switch {
	case b.Last == nil:
		line += "; no run yet"
	case b.Last.Err != "":
		line += fmt.Sprintf("; last run %s failed", b.Last.Finished.UTC().Format(time.RFC3339))
	default:
		line += fmt.Sprintf("; last run %s ok (%s)", b.Last.Finished.UTC().Format(time.RFC3339), b.Last.ID)
	}
	return line
}
