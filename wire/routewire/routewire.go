package routewire

import (
	"slices"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// FromTable encodes rt for the wire: the slot table as ranges, the groups
// sorted by name.
func FromTable(rt *coord.RouteTable) *wire.Routes {
	out := &wire.Routes{Version: rt.Table.Version, Slots: uint32(len(rt.Table.Owners))}
	for _, rg := range rt.Table.Ranges() {
		out.Ranges = append(out.Ranges, &wire.SlotRange{From: uint32(rg.From), To: uint32(rg.To), Group: rg.Group})
	}
	names := make([]string, 0, len(rt.Groups))
	for name := range rt.Groups {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		g := rt.Groups[name]
		wg := &wire.GroupRoute{Name: g.Name, Epoch: g.Epoch, Primary: g.Primary, PrimaryAddr: g.PrimaryAddr}
		for _, m := range g.Members {
			wg.Members = append(wg.Members, &wire.NodeRoute{Id: m.ID, Addr: m.Addr})
		}
		out.Groups = append(out.Groups, wg)
	}
	return out
}

// ToTable decodes a coordinator's answer. Ranges beyond r.Slots are
// ignored; slots no range covers are unassigned.
func ToTable(r *wire.Routes) *coord.RouteTable {
	owners := make([]string, r.Slots)
	for _, rg := range r.Ranges {
		for s := rg.From; s <= rg.To && int(s) < len(owners); s++ {
			owners[s] = rg.Group
		}
	}
	rt := &coord.RouteTable{
		Table:  &coord.SlotTable{Version: r.Version, Owners: owners},
		Groups: make(map[string]coord.GroupRoute, len(r.Groups)),
	}
	for _, g := range r.Groups {
		gr := coord.GroupRoute{Name: g.Name, Epoch: g.Epoch, Primary: g.Primary, PrimaryAddr: g.PrimaryAddr}
		for _, m := range g.Members {
			gr.Members = append(gr.Members, coord.NodeRoute{ID: m.Id, Addr: m.Addr})
		}
		rt.Groups[g.Name] = gr
	}
	return rt
}
