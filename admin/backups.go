package admin

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/thunderyurts/thunderyurts/backup"
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

// BackupRow is one backup in `admin backup list` and `verify`.
type BackupRow struct {
	ID    string    `json:"id"`
	Time  time.Time `json:"time"`
	Keys  int64     `json:"keys"`
	Bytes int64     `json:"bytes"` // keys and values
	Size  int64     `json:"size"`  // the files' bytes
	// Status is "complete" or "incomplete"; Error says why it is not complete.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// BackupRows turns backup.List's answer into rows.
func BackupRows(list []backup.Info) []BackupRow {
	rows := make([]BackupRow, 0, len(list))
	for _, in := range list {
		r := BackupRow{ID: in.ID, Time: in.Time, Keys: in.Keys, Bytes: in.Bytes, Size: in.Size, Status: "complete"}
		if !in.Complete {
			r.Status = "incomplete"
			if in.Err != nil {
				r.Error = in.Err.Error()
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// PrintBackups renders backup rows, oldest first.
func PrintBackups(w io.Writer, rows []BackupRow, f Format) error {
	return render(w, f, rows, func() error {
		ew := &errWriter{w: w}
		var cells [][]string
		for _, r := range rows {
			cells = append(cells, []string{r.ID, r.Time.UTC().Format(time.RFC3339), strconv.FormatInt(r.Keys, 10),
				strconv.FormatInt(r.Bytes, 10), r.Status})
		}
		ew.table("", []string{"ID", "TIME", "KEYS", "BYTES", "STATUS"}, cells)
		return ew.err
	})
}

// PrintBackupResult renders what a backup run or a restore did; kind is
// "backup" or "restore".
func PrintBackupResult(w io.Writer, kind string, r backup.Result, f Format) error {
	return render(w, f, r, func() error {
		ew := &errWriter{w: w}
		secs := max(r.Took.Seconds(), 1e-3)
		ew.printf("%s %s: %d slots, %d keys, %d bytes in %s (%.0f keys/s, %.1f MB/s)\n", kind, r.ID, r.Slots, r.Keys, r.Bytes,
			r.Took.Round(time.Millisecond), float64(r.Keys)/secs, float64(r.Bytes)/secs/1e6)
		if len(r.Groups) > 0 {
			var cells [][]string
			for _, g := range slices.Sorted(maps.Keys(r.Groups)) {
				pt := r.Groups[g]
				cells = append(cells, []string{g, pt.Node, strconv.FormatUint(pt.Epoch, 10), strconv.FormatUint(pt.Sequence, 10)})
			}
			ew.table("", []string{"GROUP", "NODE", "EPOCH", "SEQ"}, cells)
		}
		return ew.err
	})
}

// BackupScheduleView is `admin backup schedule show`.
type BackupScheduleView struct {
	BackupStatus
	NextRun *time.Time `json:"next_run,omitempty"`
}

// BuildBackupSchedule summarises st for schedule show; next is the next
// run time (nil: none).
func BuildBackupSchedule(st *coord.BackupState, next *time.Time) *BackupScheduleView {
	b := buildBackupStatus(st, nil, func(string, ...any) {})
	return &BackupScheduleView{BackupStatus: *b, NextRun: next}
}

// PrintBackupSchedule renders the schedule view.
func PrintBackupSchedule(w io.Writer, v *BackupScheduleView, f Format) error {
	return render(w, f, v, func() error {
		ew := &errWriter{w: w}
		if v.Schedule == nil {
			ew.printf("no backup schedule\n")
			return ew.err
		}
		s := v.Schedule
		rows := [][]string{
			{"cron", s.Cron},
			{"destination", s.To},
			{"keep", strconv.Itoa(s.Keep)},
		}
		if s.S3Endpoint != "" {
			rows = append(rows, []string{"s3 endpoint", s.S3Endpoint})
		}
		last, lastOK := unknownCell, unknownCell
		if r := v.Last; r != nil {
			last = runLine(r)
		}
		if r := v.LastSuccess; r != nil {
			lastOK = runLine(r)
		}
		next := unknownCell
		if v.NextRun != nil {
			next = v.NextRun.UTC().Format(time.RFC3339)
		}
		rows = append(rows, []string{"last run", last}, []string{"last success", lastOK}, []string{"next run", next})
		ew.table("", []string{"SCHEDULE", ""}, rows)
		return ew.err
	})
}

func runLine(r *coord.BackupRun) string {
	at := r.Finished.UTC().Format(time.RFC3339)
	if r.Err != "" {
		return fmt.Sprintf("%s failed: %s", at, r.Err)
	}
	return fmt.Sprintf("%s ok: %s, %d keys, %d bytes", at, r.ID, r.Keys, r.Bytes)
}
