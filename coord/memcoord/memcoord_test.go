package memcoord_test

import (
	"context"
	"testing"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/coordtest"
	"github.com/thunderyurts/thunderyurts/coord/memcoord"
)

type faults struct{}

func (faults) ExpireSession(t testing.TB, c coord.Conn) { c.(*memcoord.Conn).ExpireSession() }

func (faults) SetUnavailable(t testing.TB, c coord.Conn, down bool) {
	c.(*memcoord.Conn).SetUnavailable(down)
}

func TestConformance(t *testing.T) {
	srv := memcoord.New()
	coordtest.Run(t, func(t *testing.T) coord.Conn {
		c := srv.Connect()
		t.Cleanup(func() { c.Close() })
		return c
	}, faults{})
}

func BenchmarkGet(b *testing.B) {
	c := memcoord.New().Connect()
	ctx := context.Background()
	if _, err := c.Create(ctx, "/bench", []byte("value")); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := c.Get(ctx, "/bench"); err != nil {
			b.Fatal(err)
		}
	}
}
