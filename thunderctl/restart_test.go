package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/procs"
)

// A SIGKILLed data node, restarted at once, serves again without waiting
// for its old ZooKeeper session to expire: holding its directory's lock,
// it deletes its previous process's registration. A killed primary comes
// back in a new epoch, and no acknowledged write is lost. A second start
// on a directory in use is refused with one line and exit code 1.
func TestRestartAfterKillSkipsSessionExpiry(t *testing.T) {
	// The killed node's session outlives every wait below: had the restart
	// waited for it to expire, the test would time out.
	const longSession = "1m"
	tc := newTestCluster(t)
	tc.start("coord-1", "serve", "coord", "--slots", "16", "--assign-delay", "200ms", "--replication-factor", "3")
	for i := 1; i <= 3; i++ {
		tc.dataNode(fmt.Sprintf("data-%d", i), "g1", "--session-timeout", longSession)
	}
	cl := tc.coordCluster()
	tc.waitGroup(cl, "g1", 60*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 3 })
	tc.waitServing(cl, 30*time.Second)
	c := tc.client(cl)
	w := startWriter(c, 8)
	w.waitProgress(t, 200, 30*time.Second)

	for _, role := range []string{"primary", "secondary"} {
		g := tc.waitGroup(cl, "g1", 60*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 3 })
		victim := tc.procOf(g.Primary)
		if role == "secondary" {
			victim = tc.procOf(g.ISR[0])
			if victim == tc.procOf(g.Primary) {
				victim = tc.procOf(g.ISR[1])
			}
		}
		victim.Kill()
		tc.restart(victim)
		// Well within the session timeout, the restarted node has dealt
		// with its old registration and the group serves again.
		eventually(t, 30*time.Second, func() error {
			b, err := os.ReadFile(victim.Log)
			if err == nil && !bytes.Contains(b, []byte("deleted the registration of this node's previous process")) {
				err = fmt.Errorf("restarted %s %s has not reclaimed its registration", role, victim.Name)
			}
			return err
		})
		tc.waitGroup(cl, "g1", 30*time.Second, func(cur *coord.Group) bool {
			return len(cur.ISR) == 3 && (role == "secondary" || cur.Epoch > g.Epoch)
		})
		w.waitProgress(t, 200, 30*time.Second)
		if err := os.Truncate(victim.Log, 0); err != nil {
			t.Fatal(err)
		}
	}
	w.halt()
	w.verify(t, c)

	// A second data node on a directory in use is refused.
	dir := tc.procOf(tc.waitGroup(cl, "g1", time.Minute, func(g *coord.Group) bool { return g.Primary != "" }).Primary).dir
	addr, err := procs.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runCLIWithin(t, time.Minute, nil, "serve", "data", "--group", "g1", "--dir", dir,
		"--listen", addr, "--zk", tc.zk.Addr(), "--cluster", tc.name)
	// The daemon logs to stderr too: the error is its one last line.
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if code != exitFailed || strings.Count(stderr, "thunderctl: ") != 1 || !strings.HasPrefix(last, "thunderctl: ") ||
		!strings.Contains(last, dir+": data directory is in use by another running data node") {
		t.Fatalf("second start on %s: exit %d, stderr %q; want exit 1 and one line saying the directory is in use", dir, code, stderr)
	}
}
