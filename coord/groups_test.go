package coord_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/memcoord"
)

// LeaveISR takes a node out of the in-sync set with a new epoch, refuses
// the only in-sync member and the primary, and marks it for a resync on
// request; ResyncDone clears the mark.
func TestLeaveISR(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := memcoord.New().Connect()
	defer conn.Close()
	c := coord.NewCluster(conn, "t")
	if _, err := c.CreateIfMissing(ctx, coord.ClusterMeta{Slots: 4, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureGroup(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	set := func(primary string, isr ...string) {
		t.Helper()
		if _, err := c.UpdateGroup(ctx, "g1", func(g *coord.Group) error {
			g.Epoch, g.Primary, g.Members, g.ISR, g.Resync = 5, primary, []string{"p", "a", "b"}, isr, nil
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	unchanged := func(isr ...string) {
		t.Helper()
		g, _, err := c.Group(ctx, "g1")
		if err != nil || g.Epoch != 5 || !slices.Equal(g.ISR, isr) || len(g.Resync) != 0 {
			t.Fatalf("group %+v, %v; want epoch 5, ISR %v, unchanged", g, err, isr)
		}
	}

	set("p", "p", "a", "b")
	g, err := c.LeaveISR(ctx, "g1", "a", false)
	if err != nil || g.Epoch != 6 || g.Primary != "p" || !slices.Equal(g.ISR, []string{"p", "b"}) || len(g.Resync) != 0 {
		t.Fatalf("leave: %+v, %v; want epoch 6, primary p, ISR [p b]", g, err)
	}
	if g, err = c.LeaveISR(ctx, "g1", "a", false); err != nil || g.Epoch != 6 {
		t.Fatalf("leave again: %+v, %v; want nothing changed", g, err)
	}
	if g, err = c.LeaveISR(ctx, "g1", "a", true); err != nil || g.Epoch != 6 || !slices.Equal(g.Resync, []string{"a"}) {
		t.Fatalf("mark an out-of-sync node: %+v, %v; want epoch 6, resync [a]", g, err)
	}
	if err := c.ResyncDone(ctx, "g1", "a"); err != nil {
		t.Fatal(err)
	}
	if g, _, err = c.Group(ctx, "g1"); err != nil || len(g.Resync) != 0 {
		t.Fatalf("after ResyncDone: %+v, %v", g, err)
	}

	set("p", "p", "a")
	if _, err := c.LeaveISR(ctx, "g1", "p", true); !errors.Is(err, coord.ErrIsPrimary) {
		t.Fatalf("leave of the primary: %v; want ErrIsPrimary", err)
	}
	unchanged("p", "a")
	set("p", "p")
	if _, err := c.LeaveISR(ctx, "g1", "p", true); !errors.Is(err, coord.ErrOnlyInSync) {
		t.Fatalf("leave of the only in-sync primary: %v; want ErrOnlyInSync", err)
	}
	unchanged("p")
	set("p", "a") // a stranded group: its primary fell out, a alone is in sync
	if _, err := c.LeaveISR(ctx, "g1", "a", false); !errors.Is(err, coord.ErrOnlyInSync) {
		t.Fatalf("leave of the only in-sync member: %v; want ErrOnlyInSync", err)
	}
	unchanged("a")
	if _, err := c.LeaveISR(ctx, "g1", "x", false); !errors.Is(err, coord.ErrInvalid) {
		t.Fatalf("leave of a non-member: %v; want ErrInvalid", err)
	}
}
