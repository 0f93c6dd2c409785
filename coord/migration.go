package coord

import (
	"fmt"
	"slices"
	"time"
)

// Migration is one move of a contiguous range of slots from one group to
// another, recorded in the slot table while it is in flight, so that every
// data node learns of it, and of every change of its state, from the one
// znode it already watches; and so that the switch (owners change) and the
// release of a hold (state goes back to copy) are compare-and-sets of the
// same znode version: both can never win (docs/migration.md).
type Migration struct {
	ID    string         `json:"id"`
	From  string         `json:"from"`  // source group
	To    string         `json:"to"`    // target group
	First int            `json:"first"` // slots First..Last, inclusive
	Last  int            `json:"last"`
	State MigrationState `json:"state"`
	// Attempt counts the holds released without a switch (the hold ran past
	// its bound, or a digest mismatched and the copy restarts).
	Attempt int `json:"attempt"`
	// Since is when State was entered.
	Since time.Time `json:"since"`
	// Error says why the last attempt did not switch; "" none.
	Error string `json:"error,omitempty"`
	// RateMBps bounds the copy stream, in MB/s; 0 unbounded.
	RateMBps float64 `json:"rate_mbps,omitempty"`
}

// MigrationState is the phase a migration is in.
type MigrationState string

const (
	// MigrationCopy: the target's primary streams a snapshot of the slots
	// from the source's primary, then the source's log records for them,
	// into its own log. Requests for the slots are served by the source.
	MigrationCopy MigrationState = "copy"
	// MigrationHold: the source's primary holds (delays, never refuses)
	// requests for the slots until the slot table switches the slots or
	// releases the hold.
	MigrationHold MigrationState = "hold"
	// MigrationCleanup: the switch happened (the slots' owner is To); the
	// source drops its copy of the slots.
	MigrationCleanup MigrationState = "cleanup"
	// MigrationAbort: the migration is given up; the target drops what it
	// staged. Owners stay From.
	MigrationAbort MigrationState = "abort"
)

// Slots is the migration's slots, ascending.
func (m *Migration) Slots() []int {
	out := make([]int, 0, m.Last-m.First+1)
	for s := m.First; s <= m.Last; s++ {
		out = append(out, s)
	}
	return out
}

// Has reports whether slot is one of the migration's.
func (m *Migration) Has(slot int) bool { return slot >= m.First && slot <= m.Last }

// String is for logs and errors: "m-… slots 0-340 g1→g3 (copy)".
func (m *Migration) String() string {
	return fmt.Sprintf("%s slots %d-%d %s→%s (%s)", m.ID, m.First, m.Last, m.From, m.To, m.State)
}

// MigrationOf returns the in-flight migration of slot, nil if none.
func (t *SlotTable) MigrationOf(slot int) *Migration {
	for i := range t.Migrations {
		if t.Migrations[i].Has(slot) {
			return &t.Migrations[i]
		}
	}
	return nil
}

// Migration returns the in-flight migration with id, nil if none.
func (t *SlotTable) Migration(id string) *Migration {
	i := slices.IndexFunc(t.Migrations, func(m Migration) bool { return m.ID == id })
	if i < 0 {
		return nil
	}
	return &t.Migrations[i]
}

// checkMigrations validates the in-flight migrations against the table:
// ranges inside it, owned by From until the switch and by To after it, and
// no slot in two migrations.
func (t *SlotTable) checkMigrations() error {
	seen := make(map[int]string)
	for _, m := range t.Migrations {
		if m.ID == "" || m.From == "" || m.To == "" || m.From == m.To {
			return fmt.Errorf("slot table: migration %q: needs an id and two different groups", m.ID)
		}
		if m.First < 0 || m.Last < m.First || m.Last >= len(t.Owners) {
			return fmt.Errorf("slot table: migration %s: slots %d-%d outside 0-%d", m.ID, m.First, m.Last, len(t.Owners)-1)
		}
		owner := m.From
		if m.State == MigrationCleanup {
			owner = m.To
		}
		for s := m.First; s <= m.Last; s++ {
			if other, dup := seen[s]; dup {
				return fmt.Errorf("slot table: slot %d is in migrations %s and %s", s, other, m.ID)
			}
			seen[s] = m.ID
			if t.Owners[s] != owner {
				return fmt.Errorf("slot table: migration %s: slot %d is owned by %q, not %q", m.String(), s, t.Owners[s], owner)
			}
		}
	}
	return nil
}
