package coordtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

func testCreateGet(t *testing.T, s *suite) {
	ctx, c, other := testCtx(t), s.newConn(t), s.newConn(t)
	p := base(t) + "/a/b"
	v, err := c.Create(ctx, p, []byte("x"))
	must(t, err, "create with missing parents")
	if v != 0 {
		t.Errorf("create returned version %d, want 0", v)
	}
	data, v, err := other.Get(ctx, p)
	must(t, err, "get from another session")
	if string(data) != "x" || v != 0 {
		t.Errorf("get = %q v%d, want \"x\" v0", data, v)
	}
	parent, _, err := c.Get(ctx, base(t)+"/a")
	must(t, err, "get created parent")
	if len(parent) != 0 {
		t.Errorf("parent data = %q, want empty", parent)
	}
	_, err = c.Create(ctx, p, []byte("y"))
	wantErr(t, err, coord.ErrNodeExists, "create existing")
	_, _, err = c.Get(ctx, base(t)+"/missing")
	wantErr(t, err, coord.ErrNoNode, "get missing")
	_, err = c.Create(ctx, base(t)+"/empty", nil)
	must(t, err, "create with nil data")
	data, _, err = c.Get(ctx, base(t)+"/empty")
	must(t, err, "get empty")
	if len(data) != 0 {
		t.Errorf("empty node data = %q", data)
	}
}

func testUpdateCAS(t *testing.T, s *suite) {
	ctx, c, other := testCtx(t), s.newConn(t), s.newConn(t)
	p := base(t) + "/n"
	_, err := c.Create(ctx, p, []byte("v0"))
	must(t, err, "create")
	v1, err := c.Update(ctx, p, []byte("v1"), 0)
	must(t, err, "update at version 0")
	if v1 != 1 {
		t.Fatalf("update returned version %d, want 1", v1)
	}
	// other read version 1 and writes; c's write at version 0 must lose.
	_, err = c.Update(ctx, p, []byte("stale"), 0)
	wantErr(t, err, coord.ErrBadVersion, "update at stale version")
	v2, err := other.Update(ctx, p, []byte("v2"), v1)
	must(t, err, "update at current version")
	_, err = c.Update(ctx, p, []byte("stale"), v1)
	wantErr(t, err, coord.ErrBadVersion, "update lost the race")
	v3, err := c.Update(ctx, p, []byte("any"), coord.AnyVersion)
	must(t, err, "unconditional update")
	if v2 != 2 || v3 != 3 {
		t.Errorf("versions %d, %d, want 2, 3", v2, v3)
	}
	data, v, err := c.Get(ctx, p)
	must(t, err, "get")
	if string(data) != "any" || v != 3 {
		t.Errorf("get = %q v%d, want \"any\" v3", data, v)
	}
	_, err = c.Update(ctx, base(t)+"/missing", nil, coord.AnyVersion)
	wantErr(t, err, coord.ErrNoNode, "update missing")
}

func testDelete(t *testing.T, s *suite) {
	ctx, c := testCtx(t), s.newConn(t)
	p := base(t) + "/d"
	_, err := c.Create(ctx, p+"/child", nil)
	must(t, err, "create")
	wantErr(t, c.Delete(ctx, p, coord.AnyVersion), coord.ErrNotEmpty, "delete with children")
	_, err = c.Update(ctx, p+"/child", []byte("x"), coord.AnyVersion)
	must(t, err, "update")
	wantErr(t, c.Delete(ctx, p+"/child", 0), coord.ErrBadVersion, "delete at stale version")
	must(t, c.Delete(ctx, p+"/child", 1), "delete at current version")
	must(t, c.Delete(ctx, p, coord.AnyVersion), "delete unconditionally")
	_, _, err = c.Get(ctx, p)
	wantErr(t, err, coord.ErrNoNode, "get deleted")
	wantErr(t, c.Delete(ctx, p, coord.AnyVersion), coord.ErrNoNode, "delete missing")
}

func testChildren(t *testing.T, s *suite) {
	ctx, c := testCtx(t), s.newConn(t)
	dir := base(t)
	for _, name := range []string{"b", "c", "a", "a0"} {
		_, err := c.Create(ctx, dir+"/"+name, nil)
		must(t, err, "create "+name)
	}
	names, err := c.Children(ctx, dir)
	must(t, err, "children")
	if want := []string{"a", "a0", "b", "c"}; !slices.Equal(names, want) {
		t.Errorf("children = %v, want %v", names, want)
	}
	names, err = c.Children(ctx, dir+"/a")
	must(t, err, "children of a leaf")
	if len(names) != 0 {
		t.Errorf("leaf has children %v", names)
	}
	_, err = c.Children(ctx, dir+"/missing")
	wantErr(t, err, coord.ErrNoNode, "children of missing")
}

func testInvalidPaths(t *testing.T, s *suite) {
	ctx, c := testCtx(t), s.newConn(t)
	for _, p := range []string{"", "relative", "/trailing/", "/double//slash", "/dot/.", "/dotdot/../x"} {
		_, err := c.Create(ctx, p, nil)
		wantErr(t, err, coord.ErrInvalid, fmt.Sprintf("create %q", p))
		_, _, err = c.Get(ctx, p)
		wantErr(t, err, coord.ErrInvalid, fmt.Sprintf("get %q", p))
	}
}

func testEphemeral(t *testing.T, s *suite) {
	ctx, c, other := testCtx(t), s.newConn(t), s.newConn(t)
	p := base(t) + "/dir/e"
	must(t, c.CreateEphemeral(ctx, p, []byte("e")), "create ephemeral with missing parents")
	wantErr(t, c.CreateEphemeral(ctx, p, nil), coord.ErrNodeExists, "create existing ephemeral")
	data, _, err := other.Get(ctx, p)
	must(t, err, "other session sees the ephemeral")
	if string(data) != "e" {
		t.Errorf("data = %q", data)
	}

	// Session expiry deletes it, closes SessionDone, and the Conn goes on.
	done := c.SessionDone()
	if isDone(done) {
		t.Fatal("SessionDone closed on a live session")
	}
	s.faults.ExpireSession(t, c)
	if !isDone(done) {
		t.Fatal("SessionDone not closed after the session expired")
	}
	_, _, err = other.Get(ctx, p)
	wantErr(t, err, coord.ErrNoNode, "ephemeral after its session expired")
	eventually(t, "the conn works again with a new session", func() bool { return works(ctx, c) })
	if isDone(c.SessionDone()) {
		t.Fatal("SessionDone of the new session is already closed")
	}
	eventually(t, "an ephemeral can be created in the new session", func() bool {
		return c.CreateEphemeral(ctx, p, []byte("again")) == nil
	})

	// Close ends the session too.
	closer := s.newConn(t)
	must(t, closer.CreateEphemeral(ctx, base(t)+"/closer", nil), "create")
	must(t, closer.Close(), "close")
	_, _, err = other.Get(ctx, base(t)+"/closer")
	wantErr(t, err, coord.ErrNoNode, "ephemeral after Close")
}

func testSequential(t *testing.T, s *suite) {
	ctx, c, other := testCtx(t), s.newConn(t), s.newConn(t)
	dir := base(t) + "/seq"
	p1, err := c.CreateEphemeralSequential(ctx, dir+"/n-", []byte("1"))
	must(t, err, "first sequential")
	p2, err := other.CreateEphemeralSequential(ctx, dir+"/n-", []byte("2"))
	must(t, err, "second sequential")
	for _, p := range []string{p1, p2} {
		suffix := strings.TrimPrefix(p, dir+"/n-")
		if len(suffix) != 10 || strings.Trim(suffix, "0123456789") != "" {
			t.Fatalf("sequential path %q: want %s/n-<10 digits>", p, dir)
		}
	}
	if p2 <= p1 {
		t.Errorf("sequence did not increase: %s then %s", p1, p2)
	}
	data, _, err := c.Get(ctx, p2)
	must(t, err, "get sequential")
	if string(data) != "2" {
		t.Errorf("data = %q", data)
	}
	must(t, other.Close(), "close")
	names, err := c.Children(ctx, dir)
	must(t, err, "children")
	if _, n1 := coord.ParentPath(p1); !slices.Equal(names, []string{n1}) {
		t.Errorf("after the second session closed, children = %v, want only %s", names, n1)
	}
}

func testWatch(t *testing.T, s *suite) {
	ctx, c, other := testCtx(t), s.newConn(t), s.newConn(t)
	p := base(t) + "/w"
	_, _, err := c.Watch(ctx, p)
	wantErr(t, err, coord.ErrNoNode, "watch missing")
	_, err = other.Create(ctx, p, []byte("v0"))
	must(t, err, "create")
	cur, ch, err := c.Watch(ctx, p)
	must(t, err, "watch")
	if string(cur.Data) != "v0" || cur.Version != 0 || cur.Err != nil {
		t.Fatalf("current = %+v", cur)
	}
	_, err = other.Update(ctx, p, []byte("v1"), 0)
	must(t, err, "update")
	ev, ok := next(t, ch)
	if !ok || string(ev.Data) != "v1" || ev.Version != 1 || ev.Err != nil {
		t.Fatalf("event = %+v (open %v), want v1 at version 1", ev, ok)
	}
	must(t, other.Delete(ctx, p, coord.AnyVersion), "delete")
	last := closedWith(t, ch)
	wantErr(t, last.Err, coord.ErrNoNode, "last event after delete")

	// Cancelling the context closes the channel.
	_, err = other.Create(ctx, p, nil)
	must(t, err, "create again")
	wctx, cancel := context.WithCancel(ctx)
	_, ch, err = c.Watch(wctx, p)
	must(t, err, "watch again")
	cancel()
	if last := closedWith(t, ch); last.Err != nil {
		t.Errorf("after cancel: event %+v, want none", last)
	}
}

func testWatchCoalesces(t *testing.T, s *suite) {
	ctx, c, other := testCtx(t), s.newConn(t), s.newConn(t)
	p := base(t) + "/w"
	_, err := other.Create(ctx, p, nil)
	must(t, err, "create")
	_, ch, err := c.Watch(ctx, p)
	must(t, err, "watch")
	const writes = 20
	for i := 1; i <= writes; i++ {
		_, err := other.Update(ctx, p, []byte(fmt.Sprint(i)), coord.AnyVersion)
		must(t, err, "update")
	}
	// Nobody read meanwhile: the latest value must still arrive.
	for {
		ev, ok := next(t, ch)
		if !ok || ev.Err != nil {
			t.Fatalf("watch ended: %+v", ev)
		}
		if ev.Version == writes {
			if string(ev.Data) != fmt.Sprint(writes) {
				t.Fatalf("version %d has data %q", ev.Version, ev.Data)
			}
			return
		}
	}
}

func testWatchChildren(t *testing.T, s *suite) {
	ctx, c, other := testCtx(t), s.newConn(t), s.newConn(t)
	dir := base(t) + "/kids"
	_, err := other.Create(ctx, dir+"/a", nil)
	must(t, err, "create")
	cur, ch, err := c.WatchChildren(ctx, dir)
	must(t, err, "watch children")
	if !slices.Equal(cur, []string{"a"}) {
		t.Fatalf("current children %v", cur)
	}
	waitFor := func(want ...string) {
		t.Helper()
		for {
			ev, ok := next(t, ch)
			if !ok || ev.Err != nil {
				t.Fatalf("children watch ended (%+v) before %v", ev, want)
			}
			if slices.Equal(ev.Children, want) {
				return
			}
		}
	}
	must(t, other.CreateEphemeral(ctx, dir+"/b", nil), "add child")
	waitFor("a", "b")
	must(t, other.Delete(ctx, dir+"/a", coord.AnyVersion), "remove child")
	waitFor("b")
	must(t, other.Close(), "close (removes the ephemeral child)")
	waitFor()
	// Deleting the directory ends the watch.
	must(t, c.Delete(ctx, dir, coord.AnyVersion), "delete dir")
	wantErr(t, closedWith(t, ch).Err, coord.ErrNoNode, "last event after the dir was deleted")
}

func testWatchSessionLost(t *testing.T, s *suite) {
	ctx, c := testCtx(t), s.newConn(t)
	p := base(t) + "/w"
	_, err := c.Create(ctx, p, nil)
	must(t, err, "create")
	_, data, err := c.Watch(ctx, p)
	must(t, err, "watch")
	_, kids, err := c.WatchChildren(ctx, p)
	must(t, err, "watch children")
	s.faults.ExpireSession(t, c)
	wantErr(t, closedWith(t, data).Err, coord.ErrSessionLost, "data watch after session expiry")
	wantErr(t, closedWith(t, kids).Err, coord.ErrSessionLost, "children watch after session expiry")
}

func testUnavailable(t *testing.T, s *suite) {
	ctx, c, other := testCtx(t), s.newConn(t), s.newConn(t)
	p := base(t) + "/e"
	must(t, c.CreateEphemeral(ctx, p, []byte("mine")), "create ephemeral")
	_, watch, err := c.Watch(ctx, p)
	must(t, err, "watch")
	done := c.SessionDone()

	s.faults.SetUnavailable(t, c, true)
	waitDone(t, done, patience, "SessionDone after the service became unreachable")
	wantErr(t, closedWith(t, watch).Err, coord.ErrSessionLost, "watch while unreachable")
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, _, err = c.Get(cctx, p)
	cancel()
	wantErr(t, err, coord.ErrUnavailable, "get while unreachable")
	_, _, err = other.Get(ctx, p)
	must(t, err, "a short outage keeps the session and its ephemeral")

	s.faults.SetUnavailable(t, c, false)
	eventually(t, "the conn works again", func() bool { return works(ctx, c) })
	data, _, err := c.Get(ctx, p)
	must(t, err, "ephemeral after reconnecting")
	if string(data) != "mine" {
		t.Errorf("data = %q", data)
	}
}

func testContext(t *testing.T, s *suite) {
	ctx, c := testCtx(t), s.newConn(t)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err := c.Get(cancelled, "/")
	wantErr(t, err, context.Canceled, "get with a cancelled context")
	expired, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel2()
	_, err = c.Create(expired, base(t)+"/x", nil)
	wantErr(t, err, context.DeadlineExceeded, "create with an expired context")
	wantErr(t, err, coord.ErrUnavailable, "create with an expired context")
	_, _, err = c.Watch(cancelled, "/")
	wantErr(t, err, context.Canceled, "watch with a cancelled context")
}

func testClosed(t *testing.T, s *suite) {
	ctx, c := testCtx(t), s.newConn(t)
	p := base(t) + "/n"
	_, err := c.Create(ctx, p, nil)
	must(t, err, "create")
	_, ch, err := c.Watch(ctx, p)
	must(t, err, "watch")
	must(t, c.Close(), "close")
	must(t, c.Close(), "second close")
	if !isDone(c.SessionDone()) {
		t.Error("SessionDone open after Close")
	}
	if last := closedWith(t, ch); last.Err == nil {
		t.Error("watch ended by Close without an error event")
	}
	_, _, err = c.Get(ctx, p)
	wantErr(t, err, coord.ErrClosed, "get after close")
	wantErr(t, c.CreateEphemeral(ctx, p+"x", nil), coord.ErrClosed, "create after close")
}

// testSessionLease checks the proof of life a lease holder relies on: it is
// renewed while the session is reachable, never names a moment after the
// session was cut off, and never carries over to another session.
func testSessionLease(t *testing.T, s *suite) {
	ctx, c := testCtx(t), s.newConn(t)
	renewedAfter := func(at time.Time) coord.SessionLease {
		t.Helper()
		var l coord.SessionLease
		eventually(t, "a lease sent after "+at.Format(time.StampMicro), func() bool {
			l = c.Lease()
			return l.Session != 0 && l.Sent.After(at)
		})
		if l.Timeout <= 0 {
			t.Fatalf("lease with timeout %v", l.Timeout)
		}
		if l.Sent.After(time.Now()) {
			t.Fatalf("lease sent in the future: %v", l.Sent)
		}
		return l
	}
	first := renewedAfter(time.Now())

	done := c.SessionDone()
	s.faults.SetUnavailable(t, c, true)
	waitDone(t, done, patience, "session in doubt after the cut")
	cut := time.Now()
	for end := time.Now().Add(first.Timeout / 2); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if l := c.Lease(); l.Session != 0 && (l.Sent.After(cut) || l.Session != first.Session) {
			t.Fatalf("lease %+v while cut off since %v (session %d)", l, cut, first.Session)
		}
	}
	s.faults.SetUnavailable(t, c, false)
	if l := renewedAfter(cut); l.Session != first.Session {
		t.Fatalf("a short cut changed the session: %d, then %d", first.Session, l.Session)
	}

	expired := time.Now()
	s.faults.ExpireSession(t, c)
	if l := renewedAfter(expired); l.Session == first.Session {
		t.Fatalf("new lease names the expired session %d", l.Session)
	}
	eventually(t, "conn works after expiry", func() bool { return works(ctx, c) })

	must(t, c.Close(), "close")
	if l := c.Lease(); l != (coord.SessionLease{}) {
		t.Fatalf("lease after close: %+v", l)
	}
}
