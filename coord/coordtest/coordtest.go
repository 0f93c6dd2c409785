package coordtest

import (
	"context"
	"errors"
	"github.com/thunderyurts/thunderyurts/internal/poll"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

// Faults injects the failures of a real coordination service into Conns made
// by the suite's newConn.
type Faults interface {
	// ExpireSession ends conn's session the way the service does when a
	// client stays away longer than the session timeout: the session's
	// ephemeral nodes are deleted and its SessionDone channel is closed by
	// the time ExpireSession returns. conn then carries on with a new
	// session (possibly after a moment).
	ExpireSession(t testing.TB, conn coord.Conn)
	// SetUnavailable cuts conn off from the service (down) or lets it back.
	// While cut off calls fail with coord.ErrUnavailable and the session is
	// in doubt (SessionDone closes soon) but, for a short cut, survives: its
	// ephemeral nodes remain.
	SetUnavailable(t testing.TB, conn coord.Conn, down bool)
}

// suite is what every test gets.
type suite struct {
	newConn func(t *testing.T) coord.Conn
	faults  Faults
}

// patience bounds every wait for something the suite expects to happen.
const patience = 15 * time.Second

// Run runs the conformance suite. newConn returns a new connection, with a
// session of its own, to the one service under test, and closes it when t
// ends.
func Run(t *testing.T, newConn func(t *testing.T) coord.Conn, faults Faults) {
	s := &suite{newConn: newConn, faults: faults}
	tests := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"CreateGet", testCreateGet},
		{"UpdateCAS", testUpdateCAS},
		{"Delete", testDelete},
		{"Children", testChildren},
		{"InvalidPaths", testInvalidPaths},
		{"Ephemeral", testEphemeral},
		{"Sequential", testSequential},
		{"Watch", testWatch},
		{"WatchCoalesces", testWatchCoalesces},
		{"WatchChildren", testWatchChildren},
		{"WatchSessionLost", testWatchSessionLost},
		{"Unavailable", testUnavailable},
		{"Context", testContext},
		{"Closed", testClosed},
		{"SessionLease", testSessionLease},
		{"Election", testElection},
		{"ElectionResign", testElectionResign},
		{"ElectionNodeDeleted", testElectionNodeDeleted},
		{"ElectionLine", testElectionLine},
		{"ElectionSessionInDoubt", testElectionSessionInDoubt},
		{"KeepEphemeral", testKeepEphemeral},
		{"UpdateJSON", testUpdateJSON},
		{"CreateIfMissingRace", testCreateIfMissingRace},
		{"NoCluster", testNoCluster},
		{"UpdateSlotTableConcurrent", testUpdateSlotTableConcurrent},
		{"UpdateGroupConcurrent", testUpdateGroupConcurrent},
		{"GroupsAndWatches", testGroupsAndWatches},
		{"Nodes", testNodes},
		{"ReclaimNode", testReclaimNode},
		{"Coordinators", testCoordinators},
		{"Routes", testRoutes},
		{"MigrationSteps", testMigrationSteps},
		{"MigrationHistory", testMigrationHistory},
		{"RebalancePlan", testRebalancePlan},
		{"RemoveGroup", testRemoveGroup},
		{"BackupSchedule", testBackupSchedule},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, s)
		})
	}
}

// testCtx is the context of one test: it bounds the whole test.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*patience)
	t.Cleanup(cancel)
	return ctx
}

// unique is a name no other test uses: a cluster name or path element.
func unique(t testing.TB) string {
	return strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
}

// base is the test's own directory.
func base(t testing.TB) string { return "/coordtest/" + unique(t) }

// eventually polls cond until it holds, failing the test after patience.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, patience, what, cond)
}

// next waits for the next value on ch; ok is false if ch was closed.
func next[T any](t testing.TB, ch <-chan T) (v T, ok bool) {
	t.Helper()
	select {
	case v, ok = <-ch:
		return v, ok
	case <-time.After(patience):
		t.Fatalf("no event within %v", patience)
		return v, false
	}
}

// closedWith drains ch until it closes and returns the last event.
func closedWith[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	var last T
	for {
		v, ok := next(t, ch)
		if !ok {
			return last
		}
		last = v
	}
}

// isDone reports whether ch is closed (without waiting).
func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitDone waits until ch closes, failing after d.
func waitDone(t testing.TB, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: not done after %v", what, d)
	}
}

func wantErr(t testing.TB, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// works reports whether conn answers a read (it has a session again).
func works(ctx context.Context, conn coord.Conn) bool {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, _, err := conn.Get(cctx, "/")
	return err == nil
}

// quiet discards the logs of the helpers under test.
var quiet = slog.New(slog.DiscardHandler)

// view is the Cluster named name over conn, logging nowhere.
func view(conn coord.Conn, name string) *coord.Cluster {
	return coord.NewCluster(conn, name).WithLogger(quiet)
}
