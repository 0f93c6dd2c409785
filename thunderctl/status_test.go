package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/daemon/procs"
)

// statusDoc reads the table of docs/status.md's "JSON schema" section:
// each documented path, and whether it is always present.
func statusDoc(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("../docs/status.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([a-z_.\\[\\]*]+)` \\| ([^|]+) \\|")
	paths := map[string]bool{}
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			in = sc.Text() == "## JSON schema"
		}
		if m := row.FindStringSubmatch(sc.Text()); m != nil && in {
			paths[m[1]] = !strings.Contains(m[2], "optional")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(paths) < 20 {
		t.Fatalf("docs/status.md documents only %d JSON paths: the parser is broken", len(paths))
	}
	return paths
}

// jsonPaths lists the paths of v in docs/status.md's notation.
func jsonPaths(prefix string, v any, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			if prefix == "backups" && slices.Contains([]string{"running", "last", "last_success"}, k) {
				out[p] = true
				p = "backups.*"
			}
			out[p] = true
			jsonPaths(p, child, out)
		}
	case []any:
		for _, child := range v {
			jsonPaths(prefix+"[]", child, out)
		}
	}
}

// checkStatusSchema checks a status JSON against docs/status.md: every
// path in it is documented, every path documented as always present is in
// it (below arrays that have elements), and the enums hold.
func checkStatusSchema(t *testing.T, raw string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatalf("status JSON does not parse: %v\n%s", err, raw)
	}
	doc := statusDoc(t)
	got := map[string]bool{}
	jsonPaths("", v, got)
	for p := range got {
		if _, ok := doc[p]; !ok {
			t.Errorf("status JSON has %s, which docs/status.md does not document", p)
		}
	}
	for p, always := range doc {
		array, _, inArray := strings.Cut(p, "[]")
		switch {
		case !always || got[p] || strings.HasPrefix(p, "backups"):
		case inArray && !slices.ContainsFunc(slices.Collect(maps.Keys(got)), func(g string) bool { return strings.HasPrefix(g, array+"[]") }):
			// an empty array
		default:
			t.Errorf("docs/status.md documents %s as always present; the JSON lacks it", p)
		}
	}
	if s := v["state"]; s != "healthy" && s != "unhealthy" {
		t.Errorf("state %v is not one of the documented values", s)
	}
	for _, n := range v["nodes"].([]any) {
		n := n.(map[string]any)
		if !slices.Contains([]string{"up", "store-failed", "unreachable", "registered", "not-registered"}, n["state"].(string)) {
			t.Errorf("node %v: state %v is not one of the documented values", n["id"], n["state"])
		}
	}
	return v
}

// nodesByID returns the status JSON's nodes by id.
func nodesByID(v map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, n := range v["nodes"].([]any) {
		n := n.(map[string]any)
		out[n["id"].(string)] = n
	}
	return out
}

// TestAdminStatusHealth runs `admin status` against a group of two: it
// exits 0 while healthy, its JSON matches the documented schema and both
// members count the same keys; with a secondary SIGKILLed it exits 1
// naming it, and shows it down without a role.
func TestAdminStatusHealth(t *testing.T) {
	tc := newTestCluster(t)
	http := func() string {
		addr, err := procs.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		return addr
	}
	tc.start("coord-1", "serve", "coord", "--slots", "16", "--assign-delay", "500ms", "--replication-factor", "2", "--http", http())
	a := tc.dataNode("data-a", "g1", "--http", http())
	b := tc.dataNode("data-b", "g1", "--http", http())
	cl := tc.coordCluster()
	tc.waitServing(cl, 30*time.Second)
	tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 2 })
	cli := tc.client(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 50 {
		if err := cli.Put(ctx, fmt.Appendf(nil, "k%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}

	eventually(t, 30*time.Second, func() error {
		out, errOut, code := tc.cli(nil, "admin", "status")
		if code != 0 {
			return fmt.Errorf("admin status exit %d: %s\n%s", code, errOut, out)
		}
		if !strings.Contains(out, "cluster e2e: healthy") {
			return fmt.Errorf("healthy status reads:\n%s", out)
		}
		return nil
	})
	// Both members count every key: a caught-up secondary is not "0 keys".
	eventually(t, 30*time.Second, func() error {
		out, errOut, code := tc.cli(nil, "admin", "status", "-o", "json")
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, errOut)
		}
		v := checkStatusSchema(t, out)
		if v["state"] != "healthy" {
			return fmt.Errorf("state %v", v["state"])
		}
		for id, n := range nodesByID(v) {
			if n["keys"] != float64(50) || n["state"] != "up" || n["http"] == "" || n["role"] == "" {
				return fmt.Errorf("node %s: %v, want up with 50 keys, a role and an http address", id, n)
			}
		}
		return nil
	})

	// A secondary killed: exit 1, naming it; its row has no role.
	primary := tc.waitGroup(cl, "g1", 10*time.Second, func(g *coord.Group) bool { return g.Primary != "" }).Primary
	victim := b
	if nodeIDOf(t, b) == primary {
		victim = a
	}
	id := nodeIDOf(t, victim)
	victim.Kill()
	eventually(t, 30*time.Second, func() error {
		out, errOut, code := tc.cli(nil, "admin", "status")
		if code != 1 || !strings.Contains(errOut, "cluster e2e is unhealthy: ") || !strings.Contains(out, id) {
			return fmt.Errorf("exit %d, stderr %q", code, errOut)
		}
		if n := strings.Count(strings.TrimSpace(errOut), "\n"); n != 0 {
			t.Errorf("the error is %d lines, want one: %q", n+1, errOut)
		}
		return nil
	})
	eventually(t, 30*time.Second, func() error {
		out, _, code := tc.cli(nil, "admin", "status", "-o", "json")
		v := checkStatusSchema(t, out)
		n := nodesByID(v)[id]
		warnings := fmt.Sprint(v["warnings"])
		switch {
		case code != 1 || v["state"] != "unhealthy":
			return fmt.Errorf("exit %d, state %v", code, v["state"])
		case n["role"] != "" || (n["state"] != "unreachable" && n["state"] != "not-registered"):
			return fmt.Errorf("killed node %s reads %v", id, n)
		case !strings.Contains(warnings, id) || !strings.Contains(warnings, "in sync"):
			return fmt.Errorf("warnings %s do not name %s and the group out of sync", warnings, id)
		}
		return nil
	})
}

// TestAdminStatusWatch: --watch prints reports one after another when not
// on a terminal, and Ctrl-C (SIGINT) ends it with exit 0.
func TestAdminStatusWatch(t *testing.T) {
	tc := newTestCluster(t)
	tc.coordinator("coord-1")
	tc.dataNode("data-g1", "g1")
	tc.waitServing(tc.coordCluster(), 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, thunderctlBin, "--zk", tc.zk.Addr(), "--cluster", tc.name, "admin", "status", "--watch", "--interval", "200ms")
	// A file, not a terminal: the process writes it while the test reads.
	out, err := os.Create(filepath.Join(t.TempDir(), "watch.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		b, _ := os.ReadFile(out.Name())
		return string(b)
	}
	eventually(t, 30*time.Second, func() error {
		if n := strings.Count(read(), "cluster e2e: "); n < 3 {
			return fmt.Errorf("%d reports so far:\n%s", n, read())
		}
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("admin status --watch after Ctrl-C: %v\n%s", err, read())
	}
	if s := read(); strings.Contains(s, "\x1b[") {
		t.Errorf("terminal escapes in output to a file:\n%q", s)
	}
}
