package coord

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrMigrationChanged: a migration is no longer in the state (or attempt)
// a step expected, or is gone: someone else moved it on first. The caller
// reads the table again; nothing was written.
var ErrMigrationChanged = errors.New("coord: migration changed")

// NewMigrationID names a migration started at now for slots from first:
// "m-20261202T134500.123-s341". IDs sort by start time, so the history
// directory lists oldest first.
func NewMigrationID(now time.Time, first int) string {
	return fmt.Sprintf("m-%s-s%d", now.UTC().Format("20060102T150405.000"), first)
}

// StartMigration adds m to the slot table in state copy, attempt 0, Since
// now, after checking that From owns every slot of it and that no slot is
// in another migration (ErrInvalid otherwise). An empty ID gets one from
// NewMigrationID. It returns the migration as stored.
func (c *Cluster) StartMigration(ctx context.Context, m Migration) (*Migration, error) {
	now := time.Now().UTC()
	if m.ID == "" {
		m.ID = NewMigrationID(now, m.First)
	}
	m.State, m.Attempt, m.Since, m.Error = MigrationCopy, 0, now, ""
	if err := CheckName("migration", m.ID); err != nil {
		return nil, err
	}
	if _, err := c.UpdateSlotTable(ctx, func(t *SlotTable) error {
		if t.Migration(m.ID) != nil {
			return fmt.Errorf("%w: migration %s exists", ErrInvalid, m.ID)
		}
		t.Migrations = append(t.Migrations, m)
		return nil // UpdateSlotTable checks ownership and overlaps
	}); err != nil {
		return nil, fmt.Errorf("start migration %s: %w", m.String(), err)
	}
	return &m, nil
}

// HoldMigration moves migration id from copy to hold, only if it is still
// in copy at attempt.
func (c *Cluster) HoldMigration(ctx context.Context, id string, attempt int) (*SlotTable, error) {
	return c.stepMigration(ctx, id, attempt, func(_ *SlotTable, m *Migration) {
		m.State = MigrationHold
	}, MigrationCopy)
}

// SwitchMigration makes migration id's target the owner of its slots and
// moves it to cleanup, only if it is still in hold at attempt: a hold
// released meanwhile (a new attempt) can never switch, and since both are
// compare-and-sets of the one slot table, only one of the two wins.
func (c *Cluster) SwitchMigration(ctx context.Context, id string, attempt int) (*SlotTable, error) {
	return c.stepMigration(ctx, id, attempt, func(t *SlotTable, m *Migration) {
		for s := m.First; s <= m.Last; s++ {
			t.Owners[s] = m.To
		}
		m.State, m.Error = MigrationCleanup, ""
	}, MigrationHold)
}

// ReleaseHold gives up migration id's hold: back to copy with the next
// attempt and why, only if it is still in hold at attempt. The source
// serves the held requests again; the copy goes on.
func (c *Cluster) ReleaseHold(ctx context.Context, id string, attempt int, why string) (*SlotTable, error) {
	return c.stepMigration(ctx, id, attempt, func(_ *SlotTable, m *Migration) {
		m.State, m.Attempt, m.Error = MigrationCopy, m.Attempt+1, why
	}, MigrationHold)
}

// AbortMigration gives migration id up, only if it has not switched (it is
// in copy or hold, any attempt): the target drops what it staged, the
// owners stay.
func (c *Cluster) AbortMigration(ctx context.Context, id, why string) (*SlotTable, error) {
	return c.stepMigration(ctx, id, anyAttempt, func(_ *SlotTable, m *Migration) {
		m.State, m.Error = MigrationAbort, why
	}, MigrationCopy, MigrationHold)
}

// EndMigration removes migration id from the table once it is over: only if
// it is in state (cleanup: the source dropped its copy; abort: the target
// dropped what it staged).
func (c *Cluster) EndMigration(ctx context.Context, id string, state MigrationState) (*SlotTable, error) {
	if state != MigrationCleanup && state != MigrationAbort {
		return nil, fmt.Errorf("%w: end migration %s in state %s", ErrInvalid, id, state)
	}
	return c.stepMigration(ctx, id, anyAttempt, func(t *SlotTable, m *Migration) {
		t.Migrations = slices.DeleteFunc(t.Migrations, func(x Migration) bool { return x.ID == m.ID })
	}, state)
}

// anyAttempt: a step that does not depend on the attempt.
const anyAttempt = -1

// stepMigration changes migration id with change in one compare-and-set of
// the slot table, only while it is in one of the states from and (unless
// anyAttempt) at attempt; otherwise ErrMigrationChanged. Since becomes now
// when the state changes.
func (c *Cluster) stepMigration(ctx context.Context, id string, attempt int, change func(*SlotTable, *Migration), from ...MigrationState) (*SlotTable, error) {
	t, err := c.UpdateSlotTable(ctx, func(t *SlotTable) error {
		m := t.Migration(id)
		switch {
		case m == nil:
			return fmt.Errorf("%w: migration %s is no longer in the slot table", ErrMigrationChanged, id)
		case !slices.Contains(from, m.State) || (attempt != anyAttempt && m.Attempt != attempt):
			return fmt.Errorf("%w: migration %s is in %s attempt %d, not %v attempt %d", ErrMigrationChanged, id, m.State, m.Attempt, from, attempt)
		}
		state := m.State
		change(t, m)
		if m := t.Migration(id); m != nil && m.State != state {
			m.Since = time.Now().UTC()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migration %s: %w", id, err)
	}
	return t, nil
}
