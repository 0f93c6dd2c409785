package coord

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// HistoryLimit is how many finished migrations the history keeps.
const HistoryLimit = 50

// MigrationRecord is a finished migration as the history keeps it: the
// migration as it last stood in the slot table (State cleanup: it moved
// the slots; abort: it did not, Error says why), when it finished, what
// the target reported copying in its last attempt, and what the source
// reported of its holds.
type MigrationRecord struct {
	Migration
	Finished time.Time `json:"finished"`
	Keys     uint64    `json:"keys,omitempty"`
	Bytes    uint64    `json:"bytes,omitempty"`
	// Holds is how many holds the source's primary ended (released or
	// switched); LastPauseMs how long, in milliseconds, the last of them
	// held requests for the slots. Both 0 when the source did not report.
	Holds       int     `json:"holds,omitempty"`
	LastPauseMs float64 `json:"last_pause_ms,omitempty"`
}

// LastPause is r.LastPauseMs as a duration.
func (r *MigrationRecord) LastPause() time.Duration {
	return time.Duration(r.LastPauseMs * float64(time.Millisecond))
}

// Moved reports whether the migration moved its slots.
func (r *MigrationRecord) Moved() bool { return r.State == MigrationCleanup }

// RecordMigration adds rec to the history (migrations/<id>) and prunes it
// to the newest HistoryLimit. Recording the same migration again changes
// nothing, so a leader that took over half way may record it again.
func (c *Cluster) RecordMigration(ctx context.Context, rec MigrationRecord) error {
	if c.err != nil {
		return c.err
	}
	if err := CheckName("migration", rec.ID); err != nil {
		return err
	}
	if rec.Finished.IsZero() {
		rec.Finished = time.Now().UTC()
	}
	if _, err := createJSON(ctx, c.conn, migrationPath(c.name, rec.ID), rec); err != nil {
		return fmt.Errorf("record migration %s: %w", rec.ID, err)
	}
	ids, err := c.conn.Children(ctx, migrationsDir(c.name))
	if err != nil {
		return fmt.Errorf("record migration %s: %w", rec.ID, err)
	}
	// IDs sort by start time (NewMigrationID): the first are the oldest.
	for _, id := range ids[:max(0, len(ids)-HistoryLimit)] {
		if err := c.conn.Delete(ctx, migrationPath(c.name, id), AnyVersion); err != nil && !errors.Is(err, ErrNoNode) {
			return fmt.Errorf("prune migration history: %w", err)
		}
	}
	return nil
}

// MigrationHistory reads the finished migrations kept, oldest first.
func (c *Cluster) MigrationHistory(ctx context.Context) ([]MigrationRecord, error) {
	if c.err != nil {
		return nil, c.err
	}
	ids, err := c.conn.Children(ctx, migrationsDir(c.name))
	if errors.Is(err, ErrNoNode) {
		return nil, nil // none finished yet
	}
	if err != nil {
		return nil, fmt.Errorf("migration history: %w", err)
	}
	out := make([]MigrationRecord, 0, len(ids))
	for _, id := range ids {
		r, _, err := GetJSON[MigrationRecord](ctx, c.conn, migrationPath(c.name, id))
		if errors.Is(err, ErrNoNode) {
			continue // pruned while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("migration history: %w", err)
		}
		out = append(out, *r)
	}
	return out, nil
}

// FinishedMigration reads migration id from the history; ErrNoNode if it
// is not there.
func (c *Cluster) FinishedMigration(ctx context.Context, id string) (*MigrationRecord, error) {
	if c.err != nil {
		return nil, c.err
	}
	if err := CheckName("migration", id); err != nil {
		return nil, err
	}
	r, _, err := GetJSON[MigrationRecord](ctx, c.conn, migrationPath(c.name, id))
	if err != nil {
		return nil, fmt.Errorf("finished migration %s: %w", id, err)
	}
	return r, nil
}
