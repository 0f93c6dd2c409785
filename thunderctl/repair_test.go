package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/clustertest"
)

// A SIGKILLed secondary whose log was damaged on disk refuses to start
// (exit 1, one line naming the segment); started with --repair it sets
// its files aside, rebuilds from the group, returns to the in-sync set
// and holds every acknowledged write (checked by making it primary).
func TestRepairDamagedSecondary(t *testing.T) {
	tc, cl := startGroup(t, 3)
	c := tc.client(cl)
	w := startWriter(c, 4)
	w.waitProgress(t, 200, 30*time.Second)
	g := tc.waitGroup(cl, "g1", 10*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 3 })
	id := g.ISR[slices.IndexFunc(g.ISR, func(id string) bool { return id != g.Primary })]
	victim := tc.procOf(id)
	victim.Kill()
	w.waitProgress(t, 200, 30*time.Second) // the group writes on without it
	w.halt()

	seg := clustertest.DamageLog(t, filepath.Join(victim.dir, "store"))
	_, stderr, code := tc.cli(nil, "serve", "data", "--group", "g1", "--dir", victim.dir, "--listen", victim.addr,
		"--session-timeout", sessionTimeout.String())
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	if code != 1 || !strings.HasPrefix(last, "thunderctl: ") || !strings.Contains(last, seg) || !strings.Contains(last, "--repair") {
		t.Fatalf("start of the damaged node: exit %d, last line %q; want exit 1 and one line naming %s and --repair", code, last, seg)
	}
	if aside, _ := filepath.Glob(filepath.Join(victim.dir, "store", "damaged-*")); len(aside) != 0 {
		t.Fatalf("a refused start set files aside: %v", aside)
	}

	victim.Args = append(victim.Args, "--repair")
	tc.restart(victim)
	tc.waitGroup(cl, "g1", time.Minute, func(g *coord.Group) bool { return len(g.ISR) == 3 && slices.Contains(g.ISR, id) })
	aside, _ := filepath.Glob(filepath.Join(victim.dir, "store", "damaged-*", "wal", filepath.Base(seg)))
	if len(aside) != 1 {
		t.Fatalf("the damaged segment was not kept aside: %v", aside)
	}
	if out, stderr, code := tc.cli(nil, "admin", "failover", "--group", "g1", "--to", id); code != 0 {
		t.Fatalf("failover to the repaired node: exit %d: %s%s", code, out, stderr)
	}
	tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return g.Primary == id })
	w.verify(t, c)
	if st := victim.ExitState(); st != "" {
		t.Fatalf("the repaired node exited: %s", st)
	}
}
