package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

// A primary frozen with SIGSTOP while a successor is elected and
// acknowledges a newer value must not answer, once resumed, a read that a
// long-lived client sent it meanwhile with the old value: its lease on its
// ZooKeeper session ran out while it was frozen, which it sees on its first
// look at the clock, before it learns anything else.
func TestResumedPrimaryServesNoStaleRead(t *testing.T) {
	tc, cl := startGroup(t, 2)
	stale := tc.client(cl) // keeps its route to the old primary
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := stale.Put(ctx, []byte("k"), []byte("old")); err != nil {
		t.Fatal(err)
	}
	if v, err := stale.Get(ctx, []byte("k")); err != nil || string(v) != "old" {
		t.Fatalf("get before the freeze: %q, %v", v, err)
	}

	g := tc.waitGroup(cl, "g1", time.Second, func(*coord.Group) bool { return true })
	old := tc.procOf(g.Primary)
	if err := old.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = old.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	tc.waitGroup(cl, "g1", sessionTimeout+15*time.Second, func(ng *coord.Group) bool { return ng.Primary != g.Primary && ng.Primary != "" })
	fresh := tc.client(cl)
	if err := fresh.Put(ctx, []byte("k"), []byte("new")); err != nil {
		t.Fatalf("put on the new primary: %v", err)
	}

	// The get waits in the frozen primary's socket until it resumes.
	type result struct {
		v   []byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		v, err := stale.Get(ctx, []byte("k"))
		got <- result{v, err}
	}()
	time.Sleep(200 * time.Millisecond)
	resume()
	r := <-got
	if r.err != nil || string(r.v) != "new" {
		t.Fatalf("get sent to the frozen primary: %q, %v; want \"new\"", r.v, r.err)
	}
}
