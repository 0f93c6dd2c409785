package coord

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The backup schedule and its runs live under the cluster:
//
//	/thunderyurts/<cluster>/backup/schedule      BackupSchedule
//	/thunderyurts/<cluster>/backup/runs/<tick>   BackupRun, one per cron tick
func backupSchedulePath(cluster string) string { return ClusterPath(cluster) + "/backup/schedule" }
func backupRunsDir(cluster string) string      { return ClusterPath(cluster) + "/backup/runs" }

// BackupSchedule is when and where the coordinator leader backs the cluster
// up (admin backup schedule set).
type BackupSchedule struct {
	// Cron is a robfig/cron spec: five fields, or six with seconds first.
	Cron string `json:"cron"`
	// To is the destination: a directory or s3://bucket/prefix.
	To string `json:"to"`
	// S3Endpoint is the S3-compatible service's URL; "" for AWS.
	S3Endpoint string `json:"s3_endpoint,omitempty"`
	// Keep is how many complete, verified backups retention keeps.
	Keep int `json:"keep"`
	// SetAt is when the schedule was last set.
	SetAt time.Time `json:"set_at"`
}

// BackupRun is one scheduled run: created when a leader claims its tick,
// completed when the run ends.
type BackupRun struct {
	// Tick is the cron tick the run belongs to; it names the znode.
	Tick time.Time `json:"tick"`
	// Coordinator is the leader that claimed the tick.
	Coordinator string    `json:"coordinator"`
	Started     time.Time `json:"started"`
	// Finished is zero while the run goes on, or when its leader died
	// before finishing it.
	Finished time.Time `json:"finished,omitzero"`
	// ID is the backup the run wrote ("" if it failed before starting one).
	ID    string `json:"id,omitempty"`
	Keys  int64  `json:"keys,omitempty"`
	Bytes int64  `json:"bytes,omitempty"`
	// Err is why the run failed; "" when it succeeded.
	Err string `json:"error,omitempty"`
}

// OK reports whether the run finished without an error.
func (r *BackupRun) OK() bool { return !r.Finished.IsZero() && r.Err == "" }

// backupRunName is the znode name of a tick: sortable, UTC, to the second.
func backupRunName(tick time.Time) string { return tick.UTC().Format("20060102T150405Z") }

// BackupSchedule reads the schedule; ErrNoNode when none is set.
func (c *Cluster) BackupSchedule(ctx context.Context) (*BackupSchedule, error) {
	if c.err != nil {
		return nil, c.err
	}
	s, _, err := GetJSON[BackupSchedule](ctx, c.conn, backupSchedulePath(c.name))
	if err != nil {
		return nil, fmt.Errorf("backup schedule: %w", err)
	}
	return s, nil
}

// SetBackupSchedule creates or replaces the schedule. ErrNoCluster if the
// cluster does not exist.
func (c *Cluster) SetBackupSchedule(ctx context.Context, s BackupSchedule) error {
	if _, err := c.Meta(ctx); err != nil {
		return fmt.Errorf("set backup schedule: %w", err)
	}
	created, err := createJSON(ctx, c.conn, backupSchedulePath(c.name), s)
	if err == nil && !created {
		_, err = UpdateJSON(ctx, c.conn, backupSchedulePath(c.name), func(cur *BackupSchedule) error {
			*cur = s
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("set backup schedule: %w", err)
	}
	return nil
}

// ClearBackupSchedule removes the schedule; the runs' records stay. No
// error if there is none.
func (c *Cluster) ClearBackupSchedule(ctx context.Context) error {
	if c.err != nil {
		return c.err
	}
	err := c.conn.Delete(ctx, backupSchedulePath(c.name), AnyVersion)
	if err != nil && !errors.Is(err, ErrNoNode) {
		return fmt.Errorf("clear backup schedule: %w", err)
	}
	return nil
}

// ClaimBackupRun records run as the one run of its tick and reports
// whether this call made the claim: of any number of callers, across
// leader changes, exactly one gets true for a tick.
func (c *Cluster) ClaimBackupRun(ctx context.Context, run BackupRun) (bool, error) {
	if c.err != nil {
		return false, c.err
	}
	claimed, err := createJSON(ctx, c.conn, JoinPath(backupRunsDir(c.name), backupRunName(run.Tick)), run)
	if err != nil {
		return false, fmt.Errorf("claim backup run of %s: %w", backupRunName(run.Tick), err)
	}
	return claimed, nil
}

// FinishBackupRun stores the outcome of a claimed run.
func (c *Cluster) FinishBackupRun(ctx context.Context, run BackupRun) error {
	if c.err != nil {
		return c.err
	}
	path := JoinPath(backupRunsDir(c.name), backupRunName(run.Tick))
	_, err := UpdateJSON(ctx, c.conn, path, func(cur *BackupRun) error {
		*cur = run
		return nil
	})
	if err != nil {
		return fmt.Errorf("finish backup run of %s: %w", backupRunName(run.Tick), err)
	}
	return nil
}

// BackupRuns reads the recorded runs, oldest tick first; none when no
// schedule ever ran.
func (c *Cluster) BackupRuns(ctx context.Context) ([]BackupRun, error) {
	if c.err != nil {
		return nil, c.err
	}
	names, err := c.conn.Children(ctx, backupRunsDir(c.name))
	if errors.Is(err, ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("backup runs: %w", err)
	}
	runs := make([]BackupRun, 0, len(names))
	for _, name := range names {
		r, _, err := GetJSON[BackupRun](ctx, c.conn, JoinPath(backupRunsDir(c.name), name))
		if errors.Is(err, ErrNoNode) {
			continue // trimmed while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("backup runs: %w", err)
		}
		runs = append(runs, *r)
	}
	slices.SortFunc(runs, func(a, b BackupRun) int { return a.Tick.Compare(b.Tick) })
	return runs, nil
}

// TrimBackupRuns deletes the records of all but the newest keep runs, so
// the history stays short; the claims of recent ticks stay, so none runs
// twice.
func (c *Cluster) TrimBackupRuns(ctx context.Context, keep int) error {
	if c.err != nil {
		return c.err
	}
	names, err := c.conn.Children(ctx, backupRunsDir(c.name))
	if errors.Is(err, ErrNoNode) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("trim backup runs: %w", err)
	}
	for _, name := range names[:max(0, len(names)-keep)] {
		err := c.conn.Delete(ctx, JoinPath(backupRunsDir(c.name), name), AnyVersion)
		if err != nil && !errors.Is(err, ErrNoNode) {
			return fmt.Errorf("trim backup runs: %w", err)
		}
	}
	return nil
}

// BackupState is the schedule (nil when none is set) with its runs, for
// status views.
type BackupState struct {
	Schedule *BackupSchedule
	Runs     []BackupRun // oldest tick first
}

// BackupState reads the schedule and its runs.
func (c *Cluster) BackupState(ctx context.Context) (*BackupState, error) {
	s, err := c.BackupSchedule(ctx)
	if err != nil && !errors.Is(err, ErrNoNode) {
		return nil, err
	}
	runs, err := c.BackupRuns(ctx)
	if err != nil {
		return nil, err
	}
	return &BackupState{Schedule: s, Runs: runs}, nil
}

// LastFinished is the newest run that finished, and the newest that
// succeeded; nil when there is none.
func (s *BackupState) LastFinished() (last, lastOK *BackupRun) {
	for i := len(s.Runs) - 1; i >= 0 && (last == nil || lastOK == nil); i-- {
		r := &s.Runs[i]
		if r.Finished.IsZero() {
			continue
		}
		if last == nil {
			last = r
		}
		if lastOK == nil && r.OK() {
			lastOK = r
		}
	}
	return last, lastOK
}
