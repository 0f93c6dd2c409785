package routewire

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

func TestRoundTrip(t *testing.T) {
	rt := &coord.RouteTable{
		Table: &coord.SlotTable{Version: 7, Owners: []string{"g1", "g1", "", "g2", "g2", "g1"}},
		Groups: map[string]coord.GroupRoute{
			"g2": {Name: "g2", Epoch: 3, Primary: "n4", PrimaryAddr: "127.0.0.1:7104",
				Members: []coord.NodeRoute{{ID: "n4", Addr: "127.0.0.1:7104"}, {ID: "n5"}}},
			"g1": {Name: "g1", Epoch: 1, Members: []coord.NodeRoute{{ID: "n1", Addr: "127.0.0.1:7101"}}},
		},
	}
	w := FromTable(rt)
	// Through the encoding itself, as a client receives it.
	b, err := proto.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	var got wire.Routes
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if back := ToTable(&got); !reflect.DeepEqual(back, rt) {
		t.Fatalf("round trip changed the table:\n got %+v\nwant %+v", back, rt)
	}
	if len(w.Ranges) != 4 || w.Groups[0].Name != "g1" {
		t.Fatalf("want 4 ranges and groups sorted by name, got %v", w)
	}
}

func TestToTableIgnoresRangesPastTheTable(t *testing.T) {
	rt := ToTable(&wire.Routes{Slots: 2, Ranges: []*wire.SlotRange{{From: 0, To: 1 << 31, Group: "g1"}}})
	if !reflect.DeepEqual(rt.Table.Owners, []string{"g1", "g1"}) {
		t.Fatalf("owners %v", rt.Table.Owners)
	}
}
