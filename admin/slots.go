package admin

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/thunderyurts/thunderyurts/coord"
)

// unassignedLabel stands for the empty owner in tables.
const unassignedLabel = "(unassigned)"

// Range is a run of consecutive slots, From and To included.
type Range struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// SlotsView is what `admin slots` shows: for each group, the slot ranges it
// owns. Groups is never nil.
type SlotsView struct {
	TableVersion int64 `json:"table_version"`
	// Slots is the total number of slots in the table.
	Slots  int          `json:"slots"`
	Groups []GroupSlots `json:"groups"`
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

// SlotRanges groups the slot table by owner: one entry per group, sorted by
// name, with the unassigned slots (Group "") last. Migrations in flight are
// not part of the slot table and so not shown.
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

// PrintSlots renders SlotRanges(t) as a GROUP | RANGES | COUNT table or as
// JSON. It returns w's write error, or ErrUnknownFormat.
func PrintSlots(w io.Writer, t *coord.SlotTable, f Format) error {
	v := SlotRanges(t)
	return render(w, f, v, func() error {
		ew := &errWriter{w: w}
		ew.printf("slot table v%d, %d slots\n", v.TableVersion, v.Slots)
		rows := make([][]string, 0, len(v.Groups))
		for _, g := range v.Groups {
			rows = append(rows, []string{orElse(g.Group, unassignedLabel), formatRanges(g.Ranges), strconv.Itoa(g.Count)})
		}
		ew.table("", []string{"GROUP", "RANGES", "COUNT"}, rows)
		return ew.err
	})
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
