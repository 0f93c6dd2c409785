package admin

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/thunderyurts/thunderyurts/coord"
)

func TestSlotRanges(t *testing.T) {
	table := &coord.SlotTable{Version: 4, Owners: []string{"g2", "g2", "", "g1", "g1", "g2", "g1", ""}}
	got := SlotRanges(table)
	want := &SlotsView{TableVersion: 4, Slots: 8, Groups: []GroupSlots{
		{Group: "g1", Ranges: []Range{{3, 4}, {6, 6}}, Count: 3},
		{Group: "g2", Ranges: []Range{{0, 1}, {5, 5}}, Count: 3},
		{Group: "", Ranges: []Range{{2, 2}, {7, 7}}, Count: 2},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SlotRanges =\n%s\nwant\n%s", dump(got), dump(want))
	}

	var buf bytes.Buffer
	if err := PrintSlots(&buf, got, FormatTable); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", buf.String())
	for _, cells := range [][]string{{"g1", "3-4,6", "3"}, {"g2", "0-1,5", "3"}, {"(unassigned)", "2,7", "2"}} {
		if !hasRow(buf.String(), cells) {
			t.Errorf("no row %q in\n%s", cells, buf.String())
		}
	}

	buf.Reset()
	if err := PrintSlots(&buf, got, FormatJSON); err != nil {
		t.Fatal(err)
	}
	var back SlotsView
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || !reflect.DeepEqual(&back, want) {
		t.Errorf("JSON round trip = %s, %v", dump(back), err)
	}
}

func TestSlotRangesEmptyTable(t *testing.T) {
	v := SlotRanges(&coord.SlotTable{})
	if v.Slots != 0 || v.Groups == nil || len(v.Groups) != 0 {
		t.Errorf("empty table view = %s", dump(v))
	}
}
