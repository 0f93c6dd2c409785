package admin

import (
	"io"
	"slices"
	"strconv"
	"strings"
)

// unknownCell stands for a value nobody reported.
const unknownCell = "-"

// PrintStatus renders s: for FormatTable a summary line, the COORDINATORS,
// GROUPS and NODES tables and the WARNINGS lines; for FormatJSON the same
// data as indented JSON. It returns w's write error, or ErrUnknownFormat.
func PrintStatus(w io.Writer, s *Status, f Format) error {
	return render(w, f, s, func() error {
		ew := &errWriter{w: w}
		ew.printf("cluster %s: %s, %d slots, replication factor %d, slot table v%d\n\n",
			s.Cluster, s.State, s.Slots, s.ReplicationFactor, s.TableVersion)
		hdr, rows := coordinatorTable(s.Coordinators)
		ew.table("COORDINATORS", hdr, rows)
		ew.printf("\n")
		hdr, rows = groupTable(s.Groups)
		ew.table("GROUPS", hdr, rows)
		ew.printf("\n")
		hdr, rows = nodeTable(s.Nodes)
		ew.table("NODES", hdr, rows)
		ew.printf("\n%s\n", backupLine(s.Backups))
		ew.printf("\nWARNINGS\n")
		if len(s.Warnings) == 0 {
			ew.printf("none\n")
		}
		for _, line := range s.Warnings {
			ew.printf("- %s\n", line)
		}
		return ew.err
	})
}

// coordinatorTable shows an ID column only when some coordinator has an
// ID of its own: by default a coordinator's ID is its address.
func coordinatorTable(cs []CoordinatorStatus) (hdr []string, rows [][]string) {
	named := slices.ContainsFunc(cs, func(c CoordinatorStatus) bool { return c.ID != c.Addr })
	hdr = []string{"ADDR", "HTTP", "ROLE"}
	if named {
		hdr = append([]string{"ID"}, hdr...)
	}
	for _, c := range cs {
		row := []string{c.Addr, orElse(c.HTTP, unknownCell), c.Role}
		if named {
			row = append([]string{c.ID}, row...)
		}
		rows = append(rows, row)
	}
	return hdr, rows
}

func groupTable(gs []GroupStatus) (hdr []string, rows [][]string) {
	hdr = []string{"GROUP", "EPOCH", "PRIMARY", "ISR", "MEMBERS", "SLOTS", "KEYS", "MAX LAG"}
	for _, g := range gs {
		rows = append(rows, []string{
			g.Name,
			strconv.FormatUint(g.Epoch, 10),
			orElse(g.Primary, unknownCell),
			orElse(strings.Join(g.ISR, ","), unknownCell),
			orElse(strings.Join(g.Members, ","), unknownCell),
			strconv.Itoa(g.Slots),
			optional(g.Keys),
			optional(g.MaxLagEntries),
		})
	}
	return hdr, rows
}

func nodeTable(ns []NodeStatusRow) (hdr []string, rows [][]string) {
	hdr = []string{"NODE", "GROUP", "ADDR", "HTTP", "ROLE", "STATE", "KEYS", "LAST SEQ", "LAG", "EPOCH"}
	for _, n := range ns {
		rows = append(rows, []string{
			n.ID,
			orElse(n.Group, unknownCell),
			orElse(n.Addr, unknownCell),
			orElse(n.HTTP, unknownCell),
			orElse(n.Role, unknownCell),
			n.State,
			optional(n.Keys),
			optional(n.LastSeq),
			optional(n.Lag),
			optional(n.Epoch),
		})
	}
	return hdr, rows
}

func optional(v *uint64) string {
	if v == nil {
		return unknownCell
	}
	return strconv.FormatUint(*v, 10)
}
