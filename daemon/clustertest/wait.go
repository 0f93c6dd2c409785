package clustertest

import (
	"context"
	"github.com/thunderyurts/thunderyurts/internal/poll"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

// Eventually polls cond until it holds, failing the test with what after
// waitFor.
func (c *Cluster) Eventually(what string, cond func(ctx context.Context) bool) {
	c.t.Helper()
	poll.Until(c.t, waitFor, what, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return cond(ctx)
	})
}

// WaitGroup waits until ok holds for group's record and returns it.
func (c *Cluster) WaitGroup(group string, ok func(*coord.Group) bool) *coord.Group {
	c.t.Helper()
	var last *coord.Group
	c.Eventually("group "+group, func(ctx context.Context) bool {
		g, _, err := c.observer.Group(ctx, group)
		if err != nil {
			return false
		}
		last = g
		return ok(g)
	})
	return last
}

// WaitServing waits until every slot is owned by a group whose primary is
// registered.
func (c *Cluster) WaitServing() {
	c.t.Helper()
	c.Eventually("every slot served", func(ctx context.Context) bool {
		rt, err := c.observer.Routes(ctx)
		return err == nil && rt.Serving()
	})
}

// Primary returns the name of group's primary once it has one.
func (c *Cluster) Primary(group string) string {
	c.t.Helper()
	g := c.WaitGroup(group, func(g *coord.Group) bool { return g.Primary != "" })
	return c.NameOf(g.Primary)
}
