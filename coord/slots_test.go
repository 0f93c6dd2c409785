package coord_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/thunderyurts/thunderyurts/coord"
)

func TestSlotOf(t *testing.T) {
	// Expected values from zlib.crc32 (the IEEE polynomial).
	tests := []struct {
		key   string
		slots int
		want  int
	}{
		{"123456789", 1024, 294}, // crc 0xcbf43926, the standard check value
		{"123456789", 16384, 14630},
		{"foo", 1024, 289},
		{"", 1024, 0},
		{"{user1}.a", 1024, 341},   // only "user1" is hashed
		{"x{user1}y", 16384, 1365}, // the tag may sit anywhere
		{"{}x", 1024, 22},          // empty tag: the whole key
		{"a{b", 1024, 76},          // no closing brace: the whole key
		{"{user1}.a", 0, 0},        // no slots
	}
	for _, tt := range tests {
		if got := coord.SlotOf([]byte(tt.key), tt.slots); got != tt.want {
			t.Errorf("SlotOf(%q, %d) = %d, want %d", tt.key, tt.slots, got, tt.want)
		}
	}
	if a, b := coord.SlotOf([]byte("{user1}.a"), 1024), coord.SlotOf([]byte("{user1}.b"), 1024); a != b {
		t.Errorf("keys with tag {user1} in slots %d and %d", a, b)
	}
	// First '{' and the first '}' after it: "{a}{b}" hashes "a", "{{a}}" hashes "{a".
	if got, want := coord.SlotOf([]byte("{a}{b}"), 1024), coord.SlotOf([]byte("a"), 1024); got != want {
		t.Errorf("{a}{b}: slot %d, want %d (tag a)", got, want)
	}
	if got, want := coord.SlotOf([]byte("{{a}}"), 1024), coord.SlotOf([]byte("{a"), 1024); got != want {
		t.Errorf("{{a}}: slot %d, want %d (tag {a)", got, want)
	}
}

func TestSpreadEvenly(t *testing.T) {
	got := coord.SpreadEvenly(10, []string{"c", "a", "b", "a"})
	want := strings.Split("a a a a b b b c c c", " ")
	if !slices.Equal(got, want) {
		t.Errorf("SpreadEvenly(10, c a b a) = %v, want %v", got, want)
	}
	for _, n := range []int{1, 2, 3, 7, 1024} {
		for groups := 1; groups <= 9; groups++ {
			var names []string
			for g := range groups {
				names = append(names, fmt.Sprintf("g%d", g))
			}
			owners := coord.SpreadEvenly(n, names)
			table := &coord.SlotTable{Owners: owners}
			ranges := table.Ranges()
			if len(owners) != n || len(ranges) != min(n, groups) {
				t.Fatalf("%d slots, %d groups: %d owners in %d ranges", n, groups, len(owners), len(ranges))
			}
			lo, hi := n, 0
			for _, r := range ranges {
				lo, hi = min(lo, r.To-r.From+1), max(hi, r.To-r.From+1)
			}
			if hi-lo > 1 {
				t.Errorf("%d slots, %d groups: block sizes %d..%d", n, groups, lo, hi)
			}
		}
	}
	if got := coord.SpreadEvenly(3, nil); !slices.Equal(got, []string{"", "", ""}) {
		t.Errorf("no groups: %q", got)
	}
	if got := coord.SpreadEvenly(0, []string{"a"}); len(got) != 0 {
		t.Errorf("no slots: %q", got)
	}
}

func TestSlotTable(t *testing.T) {
	table := &coord.SlotTable{Version: 3, Owners: []string{"g1", "g1", "", "g2", "g2", "g1"}}
	wantRanges := []coord.SlotRange{{0, 1, "g1"}, {2, 2, ""}, {3, 4, "g2"}, {5, 5, "g1"}}
	if got := table.Ranges(); !slices.Equal(got, wantRanges) {
		t.Errorf("Ranges = %v, want %v", got, wantRanges)
	}
	if got := table.SlotsOf("g1"); !slices.Equal(got, []int{0, 1, 5}) {
		t.Errorf("SlotsOf(g1) = %v", got)
	}
	if table.Owner(3) != "g2" || table.Owner(2) != "" || table.Owner(-1) != "" || table.Owner(6) != "" {
		t.Error("Owner is wrong")
	}

	data, err := json.Marshal(table)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"version":3,"slots":6,"ranges":[{"from":0,"to":1,"group":"g1"},{"from":2,"to":2,"group":""},{"from":3,"to":4,"group":"g2"},{"from":5,"to":5,"group":"g1"}]}`
	if string(data) != want {
		t.Errorf("JSON = %s\nwant   %s", data, want)
	}
	var back coord.SlotTable
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Version != 3 || !slices.Equal(back.Owners, table.Owners) {
		t.Errorf("round trip = %+v", back)
	}
	clone := table.Clone()
	clone.Owners[0] = "x"
	if table.Owners[0] != "g1" {
		t.Error("Clone shares owners")
	}

	for _, bad := range []string{
		`{"version":1,"slots":4,"ranges":[{"from":0,"to":1,"group":"a"}]}`,                               // gap at the end
		`{"version":1,"slots":4,"ranges":[{"from":0,"to":1,"group":"a"},{"from":3,"to":3,"group":"b"}]}`, // gap inside
		`{"version":1,"slots":4,"ranges":[{"from":0,"to":2,"group":"a"},{"from":2,"to":3,"group":"b"}]}`, // overlap
		`{"version":1,"slots":2,"ranges":[{"from":0,"to":5,"group":"a"}]}`,                               // past the end
		`{"version":1,"slots":-1,"ranges":[]}`,                                                           // negative size
		`{"version":1,"slots":2,"ranges":[{"from":1,"to":1,"group":"a"},{"from":0,"to":0,"group":"b"}]}`, // out of order
		`[]`,
	} {
		var st coord.SlotTable
		if err := json.Unmarshal([]byte(bad), &st); err == nil {
			t.Errorf("accepted %s as %+v", bad, st)
		}
	}
}

func TestValidatePath(t *testing.T) {
	for _, ok := range []string{"/", "/a", "/a/b-0000000001", "/thunderyurts/default/nodes/n1"} {
		if err := coord.ValidatePath(ok); err != nil {
			t.Errorf("ValidatePath(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a", "/a/", "//", "/a//b", "/.", "/a/..", "/a\x00b", "/a\nb"} {
		if err := coord.ValidatePath(bad); !errors.Is(err, coord.ErrInvalid) {
			t.Errorf("ValidatePath(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func BenchmarkSlotOf(b *testing.B) {
	key := []byte("user:1234567890:profile")
	for b.Loop() {
		coord.SlotOf(key, 1024)
	}
}

func TestSlotTableMigrationsRoundTripAndValidate(t *testing.T) {
	tbl := &coord.SlotTable{Version: 3, Owners: []string{"g1", "g1", "g2", "g2"}}
	tbl.Migrations = []coord.Migration{{ID: "m1", From: "g1", To: "g3", First: 0, Last: 1, State: coord.MigrationCopy}}
	data, err := json.Marshal(tbl)
	if err != nil {
		t.Fatal(err)
	}
	var back coord.SlotTable
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if m := back.MigrationOf(1); m == nil || m.ID != "m1" || back.MigrationOf(2) != nil {
		t.Fatalf("round trip lost the migration: %s", data)
	}
	for name, m := range map[string]coord.Migration{
		"not owned by from":       {ID: "m2", From: "g2", To: "g3", First: 0, Last: 0, State: coord.MigrationCopy},
		"cleanup not owned by to": {ID: "m2", From: "g1", To: "g3", First: 0, Last: 0, State: coord.MigrationCleanup},
		"out of range":            {ID: "m2", From: "g2", To: "g3", First: 2, Last: 9, State: coord.MigrationCopy},
		"overlapping":             {ID: "m2", From: "g1", To: "g2", First: 1, Last: 1, State: coord.MigrationCopy},
	} {
		bad := tbl.Clone()
		bad.Migrations = append(bad.Migrations, m)
		if _, err := json.Marshal(bad); err == nil {
			t.Errorf("%s: marshalled", name)
		}
	}
}
