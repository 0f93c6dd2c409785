package coordtest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

// atOnce bounds how long a leader context may outlive the event that ends
// leadership: the cancellation is immediate, this only absorbs scheduling.
const atOnce = 2 * time.Second

func campaign(t testing.TB, ctx context.Context, conn coord.Conn, dir, data string) *coord.Candidate {
	t.Helper()
	c, err := coord.Campaign(ctx, conn, dir, []byte(data))
	must(t, err, "campaign "+data)
	return c
}

func lead(t testing.TB, ctx context.Context, c *coord.Candidate) context.Context {
	t.Helper()
	lctx, err := c.WaitForLeadership(ctx)
	must(t, err, "wait for leadership of "+c.Name())
	return lctx
}

// notLeading checks that c does not become leader within a short while; the
// candidate keeps its place.
func notLeading(t testing.TB, ctx context.Context, c *coord.Candidate) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := c.WaitForLeadership(wctx)
	wantErr(t, err, context.DeadlineExceeded, c.Name()+" must not lead yet")
}

// line returns the data of the candidates in dir, in line order.
func line(t testing.TB, ctx context.Context, conn coord.Conn, dir string) []string {
	t.Helper()
	cands, err := coord.Candidates(ctx, conn, dir)
	must(t, err, "candidates")
	var out []string
	for _, c := range cands {
		out = append(out, string(c.Data))
	}
	return out
}

func testElection(t *testing.T, s *suite) {
	ctx, a, b := testCtx(t), s.newConn(t), s.newConn(t)
	dir := base(t) + "/election"
	ca := campaign(t, ctx, a, dir, "a")
	cb := campaign(t, ctx, b, dir, "b")
	la := lead(t, ctx, ca)
	if got := line(t, ctx, b, dir); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("line = %v, want [a b]", got)
	}
	notLeading(t, ctx, cb)

	s.faults.ExpireSession(t, a)
	waitDone(t, la.Done(), atOnce, "leader context after the leader's session expired")
	wantErr(t, context.Cause(la), coord.ErrSessionLost, "cause of the end of leadership")
	lb := lead(t, ctx, cb)
	if got := line(t, ctx, b, dir); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("line = %v, want [b]", got)
	}
	if lb.Err() != nil {
		t.Fatal("new leader's context already done")
	}
}

func testElectionResign(t *testing.T, s *suite) {
	ctx, a, b := testCtx(t), s.newConn(t), s.newConn(t)
	dir := base(t) + "/election"
	ca := campaign(t, ctx, a, dir, "a")
	cb := campaign(t, ctx, b, dir, "b")
	la := lead(t, ctx, ca)
	must(t, ca.Resign(ctx), "resign")
	waitDone(t, la.Done(), atOnce, "leader context after Resign")
	wantErr(t, context.Cause(la), coord.ErrResigned, "cause")
	must(t, ca.Resign(ctx), "second resign")
	lead(t, ctx, cb)
	if got := line(t, ctx, a, dir); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("line = %v, want [b]", got)
	}
	_, err := ca.WaitForLeadership(ctx)
	if err == nil {
		t.Fatal("a resigned candidate became leader")
	}
}

func testElectionNodeDeleted(t *testing.T, s *suite) {
	ctx, a, admin := testCtx(t), s.newConn(t), s.newConn(t)
	dir := base(t) + "/election"
	ca := campaign(t, ctx, a, dir, "a")
	la := lead(t, ctx, ca)
	must(t, admin.Delete(ctx, dir+"/"+ca.Name(), coord.AnyVersion), "delete the leader's node")
	waitDone(t, la.Done(), atOnce, "leader context after its node was deleted")
	wantErr(t, context.Cause(la), coord.ErrNoNode, "cause")
}

func testElectionLine(t *testing.T, s *suite) {
	ctx, a, b, c := testCtx(t), s.newConn(t), s.newConn(t), s.newConn(t)
	dir := base(t) + "/election"
	ca := campaign(t, ctx, a, dir, "a")
	cb := campaign(t, ctx, b, dir, "b")
	cc := campaign(t, ctx, c, dir, "c")
	la := lead(t, ctx, ca)
	// The middle candidate leaving changes nothing for the others.
	must(t, cb.Resign(ctx), "resign b")
	notLeading(t, ctx, cc)
	if la.Err() != nil {
		t.Fatal("leader lost leadership when a standby resigned")
	}
	// The leader leaving hands over to the next in line.
	must(t, ca.Resign(ctx), "resign a")
	lead(t, ctx, cc)
}

// testElectionSessionInDoubt: a leader cut off from the service stops at once;
// once back, its stale node must not block the line (the standby takes
// over) and a fresh campaign stands behind the new leader.
func testElectionSessionInDoubt(t *testing.T, s *suite) {
	ctx, a, b := testCtx(t), s.newConn(t), s.newConn(t)
	dir := base(t) + "/election"
	ca := campaign(t, ctx, a, dir, "a")
	cb := campaign(t, ctx, b, dir, "b")
	la := lead(t, ctx, ca)

	s.faults.SetUnavailable(t, a, true)
	waitDone(t, la.Done(), patience, "leader context after its connection was cut")
	wantErr(t, context.Cause(la), coord.ErrSessionLost, "cause")
	s.faults.SetUnavailable(t, a, false)

	lead(t, ctx, cb)
	eventually(t, "a can campaign again", func() bool { return works(ctx, a) })
	ca2 := campaign(t, ctx, a, dir, "a2")
	eventually(t, "line is [b a2]", func() bool {
		return slices.Equal(line(t, ctx, b, dir), []string{"b", "a2"})
	})
	notLeading(t, ctx, ca2)
}

func testKeepEphemeral(t *testing.T, s *suite) {
	ctx, a, obs := testCtx(t), s.newConn(t), s.newConn(t)
	log := quiet
	p := base(t) + "/kept"
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	must(t, coord.KeepEphemeral(kctx, a, p, []byte("v1"), log), "keep ephemeral")
	has := func(want string) func() bool {
		return func() bool {
			data, _, err := obs.Get(ctx, p)
			return err == nil && string(data) == want
		}
	}
	eventually(t, "node exists", has("v1"))
	err := coord.KeepEphemeral(ctx, obs, p, []byte("other"), log)
	wantErr(t, err, coord.ErrNodeExists, "keep a node that holds other data")

	s.faults.ExpireSession(t, a)
	eventually(t, "node re-created after session expiry", has("v1"))
	must(t, obs.Delete(ctx, p, coord.AnyVersion), "delete")
	eventually(t, "node re-created after deletion", has("v1"))

	stop()
	eventually(t, "node removed when its keeper's context ended", func() bool {
		_, _, err := obs.Get(ctx, p)
		return errors.Is(err, coord.ErrNoNode)
	})

	// A node that holds exactly our data counts as ours.
	q := base(t) + "/preexisting"
	must(t, obs.CreateEphemeral(ctx, q, []byte("same")), "create")
	must(t, coord.KeepEphemeral(ctx, a, q, []byte("same"), log), "keep identical node")
}
