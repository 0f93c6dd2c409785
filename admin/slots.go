package admin

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// unassignedLabel stands for the empty owner in tables.
const unassignedLabel = "(unassigned)"

// Range is a run of consecutive slots, From and To included.
type Range struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// SlotsView is what `admin slots` shows: for each group, the slot ranges it
// owns; the migrations in flight and the last one finished. Groups is never
// nil.
type SlotsView struct {
	TableVersion int64 `json:"table_version"`
	// Slots is the total number of slots in the table.
	Slots      int            `json:"slots"`
	Groups     []GroupSlots   `json:"groups"`
	Migrations []MigrationRow `json:"migrations,omitempty"`
	// LastFinished is the newest migration of the history, nil if none.
	LastFinished *FinishedRow `json:"last_finished,omitempty"`
}

// GroupSlots is one group's share of the slot table.
type GroupSlots struct {
	// Group is empty for the slots no group owns.
	Group  string  `json:"group"`
	Ranges []Range `json:"ranges"`
	Count  int     `json:"count"`
}

// ownedRange is a Range with its owner, in slot order.
type ownedRange struct {
	Range
	group string
}

func slotRanges(t *coord.SlotTable) []ownedRange {
	var out []ownedRange
	for _, r := range t.Ranges() {
		out = append(out, ownedRange{Range: Range{From: r.From, To: r.To}, group: r.Group})
	}
	return out
}

// CollectSlots reads the slot table, the history's newest migration and,
// with nodeStatus, what the targets of the migrations in flight report.
func CollectSlots(ctx context.Context, c *coord.Cluster, nodeStatus NodeStatusFunc) (*SlotsView, error) {
	t, _, err := c.SlotTable(ctx)
	if err != nil {
		return nil, err
	}
	hist, err := c.MigrationHistory(ctx)
	if err != nil {
		return nil, err
	}
	reports, err := probeMigrations(ctx, c, t, nodeStatus)
	if err != nil {
		return nil, err
	}
	return BuildSlots(t, hist, reports, time.Now()), nil
}

// BuildSlots is SlotRanges(t) with the migrations in flight (reports holds
// their targets' reports by group) and the newest of hist; it does no I/O.
func BuildSlots(t *coord.SlotTable, hist []coord.MigrationRecord, reports map[string]*wire.NodeStatus, now time.Time) *SlotsView {
	v := SlotRanges(t)
	for i := range t.Migrations {
		v.Migrations = append(v.Migrations, migrationRow(&t.Migrations[i], reports, now))
	}
	if n := len(hist); n > 0 {
		v.LastFinished = finishedRow(&hist[n-1])
	}
	return v
}

// SlotRanges groups the slot table by owner: one entry per group, sorted by
// name, with the unassigned slots (Group "") last.
func SlotRanges(t *coord.SlotTable) *SlotsView {
	v := &SlotsView{TableVersion: t.Version, Slots: len(t.Owners), Groups: []GroupSlots{}}
	index := map[string]int{}
	for _, r := range slotRanges(t) {
		i, ok := index[r.group]
		if !ok {
			i = len(v.Groups)
			index[r.group] = i
			v.Groups = append(v.Groups, GroupSlots{Group: r.group})
		}
		v.Groups[i].Ranges = append(v.Groups[i].Ranges, r.Range)
	}
	for i := range v.Groups {
		v.Groups[i].Count = countSlots(v.Groups[i].Ranges)
	}
	slices.SortFunc(v.Groups, func(a, b GroupSlots) int {
		if (a.Group == "") != (b.Group == "") {
			if a.Group == "" {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Group, b.Group)
	})
	return v
}

// PrintSlots renders v: a GROUP | RANGES | COUNT table, the MIGRATIONS in
// flight and the last finished one; or JSON. It returns w's write error, or
// ErrUnknownFormat.
func PrintSlots(w io.Writer, v *SlotsView, f Format) error {
	return render(w, f, v, func() error {
		ew := &errWriter{w: w}
		ew.printf("slot table v%d, %d slots\n", v.TableVersion, v.Slots)
		rows := make([][]string, 0, len(v.Groups))
		for _, g := range v.Groups {
			rows = append(rows, []string{orElse(g.Group, unassignedLabel), formatRanges(g.Ranges), strconv.Itoa(g.Count)})
		}
		ew.table("", []string{"GROUP", "RANGES", "COUNT"}, rows)
		if len(v.Migrations) > 0 {
			rows = rows[:0]
			for _, m := range v.Migrations {
				rate := "-"
				if m.RateMBps > 0 {
					rate = strconv.FormatFloat(m.RateMBps, 'f', -1, 64) + " MB/s"
				}
				rows = append(rows, []string{formatRanges([]Range{m.Slots}), m.From + "→" + m.To, m.State, m.InState.Round(100 * time.Millisecond).String(),
					optional(m.Keys), optional(m.Bytes), optional(m.Lag), rate, strconv.Itoa(m.Attempt), formatPause(m.LastPause), orElse(m.Error, "-")})
			}
			ew.printf("\n")
			ew.table("MIGRATIONS", []string{"SLOTS", "MOVE", "STATE", "FOR", "KEYS", "BYTES", "LAG", "RATE", "RETRIES", "LAST PAUSE", "LAST ERROR"}, rows)
		}
		if m := v.LastFinished; m != nil {
			result := "moved"
			if !m.Moved {
				result = "aborted: " + m.Error
			}
			pauses := ""
			if m.LastPause != nil {
				pauses = fmt.Sprintf(", last pause %s (%d %s)", formatPause(m.LastPause), m.Holds, plural(m.Holds, "hold", "holds"))
			}
			ew.printf("\nlast finished: %s slots %s %s→%s at %s, %d keys, %d bytes%s: %s\n", m.ID, formatRanges([]Range{m.Slots}),
				m.From, m.To, m.Finished.Format(time.RFC3339), m.Keys, m.Bytes, pauses, result)
		}
		return ew.err
	})
}

// formatPause is a hold's duration to the tenth of a millisecond, or "-".
func formatPause(d *time.Duration) string {
	if d == nil {
		return unknownCell
	}
	return d.Round(100 * time.Microsecond).String()
}

// formatRanges writes ranges the way operators type them: "0-511,1000".
func formatRanges(ranges []Range) string {
	parts := make([]string, len(ranges))
	for i, r := range ranges {
		if r.From == r.To {
			parts[i] = strconv.Itoa(r.From)
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r.From, r.To)
		}
	}
	return strings.Join(parts, ",")
}

func countSlots(ranges []Range) int {
	n := 0
	for _, r := range ranges {
		n += r.To - r.From + 1
	}
	return n
}

// orElse returns s, or alt when s is empty.
func orElse(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}
