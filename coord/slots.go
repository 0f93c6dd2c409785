package coord

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"slices"
)

// SlotOf returns the slot of key among slots: crc32 (IEEE) of the key modulo
// slots. When the key contains a non-empty hash tag — the bytes between its
// first '{' and the first '}' after it — only the tag is hashed (Redis
// rules), so "{user1}.a" and "{user1}.b" share a slot. slots must be
// positive; otherwise SlotOf returns 0.
func SlotOf(key []byte, slots int) int {
	if slots <= 0 {
		return 0
	}
	if open := bytes.IndexByte(key, '{'); open >= 0 {
		if n := bytes.IndexByte(key[open+1:], '}'); n > 0 {
			key = key[open+1 : open+1+n]
		}
	}
	return int(crc32.ChecksumIEEE(key) % uint32(slots))
}

// SlotTable says which group owns each slot. It is stored as JSON ranges:
//
//	{"version":3,"slots":1024,"ranges":[{"from":0,"to":511,"group":"g1"},{"from":512,"to":1023,"group":"g2"}]}
//
// The zero value is an empty table of no slots.
type SlotTable struct {
	// Version counts the table's changes; UpdateSlotTable bumps it by one on
	// every change, and data nodes compare it to spot a stale route.
	Version int64
	// Owners has one entry per slot: the owning group's name, "" unassigned.
	Owners []string
	// Migrations are the slot moves in flight (coord.Migration).
	Migrations []Migration
}

// SlotRange is a run of consecutive slots with the same owner, To inclusive.
type SlotRange struct {
	From  int    `json:"from"`
	To    int    `json:"to"`
	Group string `json:"group"` // "" unassigned
}

// Owner returns the group owning slot, "" when it is unassigned or out of range.
func (t *SlotTable) Owner(slot int) string {
	if slot < 0 || slot >= len(t.Owners) {
		return ""
	}
	return t.Owners[slot]
}

// SlotsOf returns the slots group owns, ascending.
func (t *SlotTable) SlotsOf(group string) []int {
	var out []int
	for slot, owner := range t.Owners {
		if owner == group {
			out = append(out, slot)
		}
	}
	return out
}

// Ranges returns the table as maximal runs of same-owner slots covering every
// slot in order, unassigned runs included (Group "").
func (t *SlotTable) Ranges() []SlotRange {
	var out []SlotRange
	for slot, owner := range t.Owners {
		if n := len(out); n > 0 && out[n-1].Group == owner {
			out[n-1].To = slot
			continue
		}
		out = append(out, SlotRange{From: slot, To: slot, Group: owner})
	}
	return out
}

// Clone returns a deep copy.
func (t *SlotTable) Clone() *SlotTable {
	return &SlotTable{Version: t.Version, Owners: slices.Clone(t.Owners), Migrations: slices.Clone(t.Migrations)}
}

type slotTableJSON struct {
	Version int64       `json:"version"`
	Slots   int         `json:"slots"`
	Ranges  []SlotRange `json:"ranges"`
	// Migrations is omitted when empty, so tables written before
	// migrations existed read the same.
	Migrations []Migration `json:"migrations,omitempty"`
}

// MarshalJSON encodes the table as ranges; a table whose migrations do not
// fit it is refused, so one is never written.
func (t *SlotTable) MarshalJSON() ([]byte, error) {
	if err := t.checkMigrations(); err != nil {
		return nil, err
	}
	return json.Marshal(slotTableJSON{Version: t.Version, Slots: len(t.Owners), Ranges: t.Ranges(), Migrations: t.Migrations})
}

// UnmarshalJSON decodes ranges, which must cover slots 0 to slots-1 in order
// without gaps or overlaps.
func (t *SlotTable) UnmarshalJSON(data []byte) error {
	var j slotTableJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	if j.Slots < 0 {
		return fmt.Errorf("slot table: %d slots", j.Slots)
	}
	owners := make([]string, 0, j.Slots)
	for _, r := range j.Ranges {
		if r.From != len(owners) || r.To < r.From || r.To >= j.Slots {
			return fmt.Errorf("slot table: range %d-%d (%q) does not continue at slot %d of %d", r.From, r.To, r.Group, len(owners), j.Slots)
		}
		for range r.To - r.From + 1 {
			owners = append(owners, r.Group)
		}
	}
	if len(owners) != j.Slots {
		return fmt.Errorf("slot table: ranges cover %d of %d slots", len(owners), j.Slots)
	}
	t.Version, t.Owners, t.Migrations = j.Version, owners, j.Migrations
	return t.checkMigrations()
}

// SpreadEvenly assigns slots to groups in contiguous blocks whose sizes differ
// by at most one, groups taken in name order (duplicates ignored): the owner
// list for a fresh table. With no groups every slot stays unassigned ("").
func SpreadEvenly(slots int, groups []string) []string {
	if slots <= 0 {
		return nil
	}
	names := slices.Compact(slices.Sorted(slices.Values(groups)))
	owners := make([]string, slots)
	if len(names) == 0 {
		return owners
	}
	base, extra := slots/len(names), slots%len(names)
	slot := 0
	for i, name := range names {
		size := base
		if i < extra {
			size++
		}
		for range size {
			owners[slot] = name
			slot++
		}
	}
	return owners
}
