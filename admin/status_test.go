package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// sampleCluster is a cluster with most of what can go wrong: g1 has an
// unreachable secondary and an unregistered one, g2 has no primary and too
// few members, n9 is registered but in no group, and the slot table has
// unassigned slots and slots of a group that does not exist.
func sampleCluster() (coord.ClusterMeta, *coord.SlotTable, []*coord.Group, []coord.NodeInfo, []coord.CoordinatorInfo, map[string]NodeProbe) {
	meta := coord.ClusterMeta{Name: "default", Slots: 16, ReplicationFactor: 3}
	owners := make([]string, 16)
	for i := range owners {
		switch {
		case i < 8:
			owners[i] = "g1"
		case i < 12:
			owners[i] = "g2"
		case i == 12 || i == 14:
			owners[i] = "" // unassigned
		default:
			owners[i] = "gX"
		}
	}
	table := &coord.SlotTable{Version: 7, Owners: owners}
	groups := []*coord.Group{
		{Name: "g2", Epoch: 1, Members: []string{"n4"}, ISR: []string{"n4"}},
		{Name: "g1", Epoch: 3, Primary: "n1", Members: []string{"n1", "n2", "n3"}, ISR: []string{"n1", "n2"}, Resync: []string{"n3"}},
	}
	nodes := []coord.NodeInfo{
		{ID: "n9", Group: "g3", Addr: "127.0.0.1:7009"},
		{ID: "n1", Group: "g1", Addr: "127.0.0.1:7001", HTTP: "127.0.0.1:8001"},
		{ID: "n2", Group: "g1", Addr: "127.0.0.1:7002"},
		{ID: "n4", Group: "g2", Addr: "127.0.0.1:7004"},
	}
	coordinators := []coord.CoordinatorInfo{
		{ID: "c1", Addr: "127.0.0.1:6001", HTTP: "127.0.0.1:9001"},
		{ID: "c2", Addr: "127.0.0.1:6002"},
	}
	probes := map[string]NodeProbe{
		"n1": {Status: &wire.NodeStatus{Id: "n1", Keys: 500, LastSeq: 100, Epoch: 3}},
		"n2": {Err: errors.New("connection refused")},
		"n4": {Status: &wire.NodeStatus{Id: "n4", Keys: 20, LastSeq: 5, Epoch: 1, State: "store-failed: disk full"}},
		"n9": {Status: &wire.NodeStatus{Id: "n9"}},
	}
	return meta, table, groups, nodes, coordinators, probes
}

func u64(v uint64) *uint64 { return &v }

func TestBuildStatus(t *testing.T) {
	s := BuildStatus(sampleCluster())

	if s.Cluster != "default" || s.Slots != 16 || s.ReplicationFactor != 3 || s.TableVersion != 7 || s.State != StateUnhealthy {
		t.Errorf("header = %q %d %d v%d %s", s.Cluster, s.Slots, s.ReplicationFactor, s.TableVersion, s.State)
	}
	wantCoords := []CoordinatorStatus{
		{ID: "c1", Addr: "127.0.0.1:6001", HTTP: "127.0.0.1:9001", Role: "leader"},
		{ID: "c2", Addr: "127.0.0.1:6002", Role: "standby"},
	}
	if !reflect.DeepEqual(s.Coordinators, wantCoords) {
		t.Errorf("coordinators = %+v", s.Coordinators)
	}

	wantGroups := []GroupStatus{
		{Name: "g1", Epoch: 3, Primary: "n1", ISR: []string{"n1", "n2"}, Members: []string{"n1", "n2", "n3"},
			Slots: 8, Keys: u64(500)}, // neither secondary answered: lag unknown
		{Name: "g2", Epoch: 1, ISR: []string{"n4"}, Members: []string{"n4"}, Slots: 4},
	}
	if !reflect.DeepEqual(s.Groups, wantGroups) {
		t.Errorf("groups =\n%s\nwant\n%s", dump(s.Groups), dump(wantGroups))
	}

	wantNodes := []NodeStatusRow{
		{ID: "n1", Group: "g1", Addr: "127.0.0.1:7001", HTTP: "127.0.0.1:8001", Role: "primary", State: "up", Keys: u64(500), LastSeq: u64(100), Epoch: u64(3), Lag: u64(0)},
		// Down: no role, a short state, the error apart.
		{ID: "n2", Group: "g1", Addr: "127.0.0.1:7002", State: "unreachable", Error: "connection refused"},
		{ID: "n3", Group: "g1", State: "not-registered"},
		{ID: "n4", Group: "g2", Addr: "127.0.0.1:7004", Role: "secondary", State: "store-failed", Error: "disk full", Keys: u64(20), LastSeq: u64(5), Epoch: u64(1)},
		{ID: "n9", Group: "g3", Addr: "127.0.0.1:7009", Role: "unassigned", State: "up", Keys: u64(0), LastSeq: u64(0), Epoch: u64(0)},
	}
	if !reflect.DeepEqual(s.Nodes, wantNodes) {
		t.Errorf("nodes =\n%s\nwant\n%s", dump(s.Nodes), dump(wantNodes))
	}

	wantWarnings := []string{
		"group g1 has 2 of 3 members in sync",
		"group g1 member n3 is not registered",
		"group g1 member n3 rebuilds its store from the group at its next start (admin node resync)",
		"group g2 has 1 member, replication factor is 3",
		"group g2 has no primary",
		"node n2 (127.0.0.1:7002) unreachable: connection refused",
		"node n4 (127.0.0.1:7004) serves nothing, its store failed: disk full",
		"2 slots unassigned: 12,14",
		"2 slots owned by unknown group gX: 13,15",
	}
	if !reflect.DeepEqual(s.Warnings, wantWarnings) {
		t.Errorf("warnings =\n%s\nwant\n%s", strings.Join(s.Warnings, "\n"), strings.Join(wantWarnings, "\n"))
	}
}

func TestBuildStatusLag(t *testing.T) {
	meta := coord.ClusterMeta{Name: "c", Slots: 4, ReplicationFactor: 3}
	table := &coord.SlotTable{Version: 1, Owners: []string{"g1", "g1", "g1", "g1"}}
	groups := []*coord.Group{{Name: "g1", Epoch: 2, Primary: "a", Members: []string{"a", "b", "c"}, ISR: []string{"a", "b", "c"}}}
	nodes := []coord.NodeInfo{{ID: "a", Addr: "x:1"}, {ID: "b", Addr: "x:2"}, {ID: "c", Addr: "x:3"}}
	coordinators := []coord.CoordinatorInfo{{ID: "c1"}}
	probes := map[string]NodeProbe{
		"a": {Status: &wire.NodeStatus{LastSeq: 1000, Keys: 42}},
		"b": {Status: &wire.NodeStatus{LastSeq: 990}},
		"c": {Status: &wire.NodeStatus{LastSeq: 997}},
	}
	s := BuildStatus(meta, table, groups, nodes, coordinators, probes)
	g := s.Groups[0]
	if g.MaxLagEntries == nil || *g.MaxLagEntries != 10 || g.Keys == nil || *g.Keys != 42 {
		t.Errorf("group = %s, want lag 10 and 42 keys", dump(g))
	}
	if len(s.Warnings) != 0 || s.State != StateHealthy || s.Problem() != nil {
		t.Errorf("healthy cluster has state %s, warnings %q", s.State, s.Warnings)
	}

	// Without probes nothing live is known, and nothing is claimed.
	s = BuildStatus(meta, table, groups, nodes, coordinators, nil)
	if g := s.Groups[0]; g.MaxLagEntries != nil || g.Keys != nil {
		t.Errorf("group without probes = %s, want unknown lag and keys", dump(g))
	}
	for _, n := range s.Nodes {
		if n.State != "registered" || n.Keys != nil {
			t.Errorf("node without probe = %s", dump(n))
		}
	}
}

func TestBuildStatusEmpty(t *testing.T) {
	s := BuildStatus(coord.ClusterMeta{Name: "c", Slots: 8, ReplicationFactor: 1}, nil, nil, nil, nil, nil)
	want := []string{"no coordinator running", "no slot table yet"}
	if !reflect.DeepEqual(s.Warnings, want) {
		t.Errorf("warnings = %q, want %q", s.Warnings, want)
	}
	// Empty lists are arrays in JSON, never null.
	var buf bytes.Buffer
	if err := PrintStatus(&buf, s, FormatJSON); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"coordinators": []`, `"groups": []`, `"nodes": []`} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("JSON lacks %s:\n%s", key, buf.String())
		}
	}
}

func TestPrintStatusTable(t *testing.T) {
	s := BuildStatus(sampleCluster())
	var buf bytes.Buffer
	if err := PrintStatus(&buf, s, FormatTable); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Logf("\n%s", out)
	sections := []string{"COORDINATORS", "GROUPS", "NODES", "WARNINGS"}
	last := -1
	for _, sec := range sections {
		i := strings.Index(out, "\n"+sec+"\n")
		if i < last {
			t.Errorf("section %s missing or out of order", sec)
		}
		last = i
	}
	for _, cells := range [][]string{
		{"c1", "127.0.0.1:6001", "127.0.0.1:9001", "leader"},
		{"g1", "3", "n1", "n1,n2", "n1,n2,n3", "8", "500", "-"},
		{"n1", "g1", "127.0.0.1:7001", "127.0.0.1:8001", "primary", "up", "500"},
		{"n2", "g1", "127.0.0.1:7002", "-", "-", "unreachable", "-", "-", "-", "-"},
		{"n3", "g1", "-", "-", "-", "not-registered"},
	} {
		if !hasRow(out, cells) {
			t.Errorf("no table row with cells %q", cells)
		}
	}
	if !strings.Contains(out, "- group g2 has no primary\n") {
		t.Error("warning line missing")
	}
	if strings.Contains(out, "connection refused |") {
		t.Error("a node's error is in the table; it belongs in the warnings and the JSON")
	}
}

// Coordinators whose ID is their address (the default) get no ID column.
func TestPrintStatusCoordinatorsByAddress(t *testing.T) {
	hdr, rows := coordinatorTable([]CoordinatorStatus{{ID: "h:1", Addr: "h:1", Role: "leader"}})
	if want := []string{"ADDR", "HTTP", "ROLE"}; !reflect.DeepEqual(hdr, want) || !reflect.DeepEqual(rows, [][]string{{"h:1", "-", "leader"}}) {
		t.Errorf("header %q rows %q, want %q and one row", hdr, rows, want)
	}
}

func TestStatusProblem(t *testing.T) {
	s := BuildStatus(sampleCluster())
	err := s.Problem()
	if err == nil || !strings.Contains(err.Error(), "cluster default is unhealthy: group g1 has 2 of 3 members in sync (and 8 more warnings)") {
		t.Errorf("Problem() = %v", err)
	}
}

func TestPrintStatusJSONRoundTrip(t *testing.T) {
	s := BuildStatus(sampleCluster())
	var buf bytes.Buffer
	if err := PrintStatus(&buf, s, FormatJSON); err != nil {
		t.Fatal(err)
	}
	var back Status
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("decode: %v\n%s", err, buf.String())
	}
	if !reflect.DeepEqual(&back, s) {
		t.Errorf("round trip changed the status:\n%s", buf.String())
	}
	for _, key := range []string{`"replication_factor": 3`, `"max_lag_entries": null`, `"last_seq": 100`, `"table_version": 7`} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"": FormatTable, "table": FormatTable, "json": FormatJSON} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("yaml"); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("ParseFormat(yaml) error = %v, want ErrUnknownFormat", err)
	}
	if err := PrintStatus(&bytes.Buffer{}, &Status{}, Format("xml")); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("PrintStatus(xml) error = %v, want ErrUnknownFormat", err)
	}
}

// hasRow reports whether some line of a rendered table holds cells, in
// order, each as a whole cell.
func hasRow(out string, cells []string) bool {
	for _, line := range strings.Split(out, "\n") {
		var got []string
		for _, c := range strings.Split(line, "|") {
			got = append(got, strings.TrimSpace(c))
		}
		if len(got) < len(cells)+2 {
			continue
		}
		got = got[1 : len(got)-1] // the borders
		if slices.Equal(got[:len(cells)], cells) {
			return true
		}
	}
	return false
}

func dump(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}
