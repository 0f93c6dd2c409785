package main

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
	"github.com/thunderyurts/thunderyurts/daemon/procs"
)

// zkSecret is the ZooKeeper password of the ACL tests: it must show up in
// no output, log, error or process listing.
const (
	zkUser   = "thunder"
	zkSecret = "Zk-s3cret-e2e-4711"
)

// zkAuthFlags writes the credentials into a file of the cluster's dir and
// returns the flags that point at it.
func (tc *testCluster) zkAuthFlags() []string {
	tc.t.Helper()
	f := filepath.Join(tc.dir, "zk-auth")
	if err := os.WriteFile(f, []byte("digest:"+zkUser+":"+zkSecret+"\n"), 0o600); err != nil {
		tc.t.Fatal(err)
	}
	return []string{"--zk-auth", "@" + f}
}

// authCluster opens a ZooKeeper session with the credentials, for the
// test's own checks.
func (tc *testCluster) authCluster() *coord.Cluster {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := zkcoord.Dial(ctx, tc.zk.Addr(), zkcoord.Options{SessionTimeout: sessionTimeout,
		Auth: zkcoord.Auth{User: zkUser, Password: zkSecret}, ACL: coord.ACLCreator})
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(func() { _ = conn.Close() })
	return coord.NewCluster(conn, tc.name)
}

// clusterZnodes lists every znode of the cluster, read with cl's
// credentials.
func clusterZnodes(t *testing.T, ctx context.Context, cl *coord.Cluster) []string {
	t.Helper()
	var out []string
	var walk func(p string)
	walk = func(p string) {
		out = append(out, p)
		names, err := cl.Conn().Children(ctx, p)
		if err != nil && !errors.Is(err, coord.ErrNoNode) {
			t.Fatal(err)
		}
		for _, n := range names {
			walk(coord.JoinPath(p, n))
		}
	}
	walk(coord.ClusterPath(cl.Name()))
	return out
}

// checkLockedDown tries, as an anonymous go-zookeeper client, to change
// every znode of the cluster (set its data, its ACL, create a child, delete
// it) and to read it; with parentLocked the shared parent /thunderyurts
// too (a cluster created with credentials made it; `admin zk secure`
// leaves it as it is). The writes carry a version no znode has: they could
// change nothing even if the ACL let them, and ZooKeeper checks the ACL
// first, so each must fail with ErrNoAuth rather than ErrBadVersion. The
// cluster's root is deleted for real: where its parent is open that fails
// only because it has children.
func checkLockedDown(t *testing.T, ctx context.Context, tc *testCluster, cl *coord.Cluster, readable, parentLocked bool) {
	t.Helper()
	anon, _, err := zk.Connect([]string{tc.zk.Addr()}, sessionTimeout, zk.WithLogInfo(false), zk.WithLogger(quietZK{}))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	const noVersion = 1 << 30
	paths := clusterZnodes(t, ctx, cl)
	if parentLocked {
		paths = append([]string{coord.Root}, paths...)
	}
	if len(paths) < 8 {
		t.Fatalf("only %d znodes: %v", len(paths), paths)
	}
	for _, p := range paths {
		if _, err := anon.Set(p, []byte("forged"), noVersion); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("anonymous set %s: %v, want ErrNoAuth", p, err)
		}
		if _, err := anon.SetACL(p, zk.WorldACL(zk.PermAll), noVersion); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("anonymous set ACL %s: %v, want ErrNoAuth", p, err)
		}
		if _, err := anon.Create(p+"/forged", nil, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("anonymous create under %s: %v, want ErrNoAuth", p, err)
		}
		switch p {
		case coord.Root:
		case coord.ClusterPath(cl.Name()):
			err := anon.Delete(p, -1)
			if !errors.Is(err, zk.ErrNoAuth) && (parentLocked || !errors.Is(err, zk.ErrNotEmpty)) {
				t.Errorf("anonymous delete %s: %v, want ErrNoAuth", p, err)
			}
		default:
			if err := anon.Delete(p, noVersion); !errors.Is(err, zk.ErrNoAuth) {
				t.Errorf("anonymous delete %s: %v, want ErrNoAuth", p, err)
			}
		}
		if _, _, err := anon.Get(p); readable != (err == nil) || (err != nil && !errors.Is(err, zk.ErrNoAuth)) {
			t.Errorf("anonymous get %s: %v (readable: %v)", p, err, readable)
		}
	}
	t.Logf("an anonymous client changed none of the %d znodes", len(paths))
}

type quietZK struct{}

func (quietZK) Printf(string, ...any) {}

// outputs collects what the commands printed, to check for the password.
type outputs []string

func (o *outputs) run(tc *testCluster, args ...string) (string, string, int) {
	tc.t.Helper()
	stdout, stderr, code := tc.cli(nil, args...)
	*o = append(*o, strings.Join(args, " ")+"\n"+stdout+stderr)
	return stdout, stderr, code
}

// checkNoSecret fails when the password, or the digest ZooKeeper keeps of
// it, appears in an output, a daemon log or the process list.
func checkNoSecret(t *testing.T, tc *testCluster, outs outputs) {
	t.Helper()
	sum := sha1.Sum([]byte(zkUser + ":" + zkSecret))
	hash := base64.StdEncoding.EncodeToString(sum[:])
	leaks := func(where, s string) {
		for _, secret := range []string{zkSecret, hash} {
			if strings.Contains(s, secret) {
				t.Errorf("%s shows the ZooKeeper password (or its hash):\n%s", where, s)
			}
		}
	}
	for _, o := range outs {
		leaks("command output", o)
	}
	tc.mu.Lock()
	for name, p := range tc.procs {
		b, err := os.ReadFile(p.Log)
		if err != nil {
			t.Error(err)
		}
		leaks("log of "+name, string(b))
	}
	tc.mu.Unlock()
	ps, err := exec.Command("ps", "-eo", "args").Output()
	if err != nil {
		t.Fatalf("ps: %v", err)
	}
	leaks("ps", string(ps))
}

// TestZKACLCluster: a cluster whose daemons and commands run with
// --zk-auth works as usual, failover included, while an anonymous
// ZooKeeper client can change (or read) none of its znodes, and a command
// without the credentials fails with one line and exit 1. The password
// shows up nowhere.
func TestZKACLCluster(t *testing.T) {
	tc := newTestCluster(t)
	auth := tc.zkAuthFlags()
	tc.start("coord-1", append([]string{"serve", "coord", "--slots", "64", "--assign-delay", "500ms", "--replication-factor", "2", "--log-level", "debug"}, auth...)...)
	for i := 1; i <= 2; i++ {
		tc.dataNode(fmt.Sprintf("data-%d", i), "g1", append([]string{"--max-lag", "1s", "--log-level", "debug"}, auth...)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := tc.authCluster()
	tc.waitServing(cl, 30*time.Second)
	g := tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 2 })

	var outs outputs
	with := func(args ...string) []string { return append(slices.Clone(auth), args...) }
	if _, stderr, code := outs.run(tc, with("put", "k1", "v1")...); code != 0 {
		t.Fatalf("put with --zk-auth: exit %d: %s", code, stderr)
	}
	if out, stderr, code := outs.run(tc, with("get", "k1")...); code != 0 || out != "v1\n" {
		t.Fatalf("get with --zk-auth: exit %d, %q, %s", code, out, stderr)
	}
	out, stderr, code := outs.run(tc, with("admin", "zk", "-r")...)
	if code != 0 || !strings.Contains(out, "digest:"+zkUser+":cdrwa") || strings.Contains(out, "world:anyone") {
		t.Errorf("admin zk -r: exit %d, want every znode's ACL digest:%s:cdrwa:\n%s%s", code, zkUser, out, stderr)
	}
	if _, stderr, code := outs.run(tc, with("admin", "status", "-o", "json")...); code != 0 {
		t.Errorf("admin status: exit %d: %s", code, stderr)
	}

	checkLockedDown(t, ctx, tc, cl, false, true)

	for _, args := range [][]string{{"get", "k1"}, {"put", "k2", "v2"}, {"admin", "status"}, {"admin", "zk"}} {
		_, stderr, code := outs.run(tc, args...)
		if code != exitFailed || strings.Count(stderr, "\n") != 1 ||
			!strings.Contains(stderr, "ZooKeeper refused: not authorised") || !strings.Contains(stderr, "need --zk-auth") {
			t.Errorf("%v without --zk-auth: exit %d, stderr %q; want exit 1 and one line saying ZooKeeper refused", args, code, stderr)
		}
	}
	if _, stderr, code := outs.run(tc, "--zk-auth", "digest:"+zkUser+":wrong-password", "get", "k1"); code != exitFailed || !strings.Contains(stderr, "not authorised") {
		t.Errorf("get with a wrong password: exit %d, %q", code, stderr)
	}
	// A daemon without the credentials stops at once, saying why.
	for _, args := range [][]string{{"serve", "coord"}, {"serve", "data", "--group", "g1", "--dir", filepath.Join(tc.dir, "anon")}} {
		addr, err := procs.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, stderr, code := outs.run(tc, append(args, "--listen", addr)...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if last := lines[len(lines)-1]; code != exitFailed || !strings.Contains(last, "ZooKeeper refused: not authorised") {
			t.Errorf("%v without --zk-auth: exit %d, last line %q", args, code, last)
		}
	}

	// Failover still works: the coordinator, authenticated, promotes the
	// other member when the primary dies.
	old := tc.procOf(g.Primary)
	old.Kill()
	ng := tc.waitGroup(cl, "g1", sessionTimeout+30*time.Second, func(ng *coord.Group) bool { return ng.Primary != g.Primary && ng.Primary != "" })
	t.Logf("killed %s; %s promoted at epoch %d", g.Primary, ng.Primary, ng.Epoch)
	eventually(t, 30*time.Second, func() error {
		if _, stderr, code := outs.run(tc, with("put", "k2", "v2")...); code != 0 {
			return fmt.Errorf("put after failover: exit %d: %s", code, stderr)
		}
		return nil
	})
	if out, stderr, code := outs.run(tc, with("get", "k1")...); code != 0 || out != "v1\n" {
		t.Errorf("get k1 after failover: exit %d, %q, %s", code, out, stderr)
	}
	tc.restart(old)
	tc.waitGroup(cl, "g1", time.Minute, func(g *coord.Group) bool { return len(g.ISR) == 2 })
	checkLockedDown(t, ctx, tc, cl, false, true)
	checkNoSecret(t, tc, outs)
}

// TestZKACLReadMode: with --zk-acl read, anyone may read the znodes, only
// the credentials change them.
func TestZKACLReadMode(t *testing.T) {
	tc := newTestCluster(t)
	auth := append(tc.zkAuthFlags(), "--zk-acl", "read")
	tc.start("coord-1", append([]string{"serve", "coord", "--slots", "16", "--assign-delay", "500ms", "--replication-factor", "1"}, auth...)...)
	tc.dataNode("data-1", "g1", auth...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := tc.authCluster()
	tc.waitServing(cl, 30*time.Second)
	checkLockedDown(t, ctx, tc, cl, true, true)
	// Reading is all a command needs to find the primary.
	if _, stderr, code := tc.cli(nil, "put", "k", "v"); code != 0 {
		t.Errorf("put without --zk-auth on a read ACL: exit %d: %s", code, stderr)
	}
}

// TestZKACLSecureExisting migrates a cluster created without ACLs while it
// serves: the daemons restart one by one with the credentials (still
// creating open znodes, so that those not restarted yet keep working),
// `admin zk secure` locks every znode down, and the cluster keeps working.
func TestZKACLSecureExisting(t *testing.T) {
	tc := newTestCluster(t)
	coordProc := tc.coordinator("coord-1")
	dataProc := tc.dataNode("data-1", "g1")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tc.waitServing(tc.coordCluster(), 30*time.Second)
	var outs outputs
	if _, stderr, code := outs.run(tc, "put", "k1", "v1"); code != 0 {
		t.Fatalf("put: exit %d: %s", code, stderr)
	}
	auth := tc.zkAuthFlags()
	with := func(args ...string) []string { return append(slices.Clone(auth), args...) }
	if _, stderr, code := outs.run(tc, "admin", "zk", "secure"); code != exitUsage || !strings.Contains(stderr, "needs --zk-auth") {
		t.Errorf("secure without --zk-auth: exit %d, %q", code, stderr)
	}

	for _, p := range []*proc{coordProc, dataProc} {
		p.Kill()
		p.Args = append(p.Args, append(slices.Clone(auth), "--zk-acl", "open")...)
		tc.restart(p)
	}
	cl := tc.authCluster()
	tc.waitServing(cl, time.Minute)

	out, stderr, code := outs.run(tc, with("admin", "zk", "secure", "--dry-run")...)
	if code != 0 || !strings.Contains(out, "would change (dry run)") {
		t.Fatalf("secure --dry-run: exit %d: %s%s", code, out, stderr)
	}
	if _, stderr, code := outs.run(tc, "put", "k2", "v2"); code != 0 {
		t.Fatalf("the dry run locked the cluster: put without credentials: exit %d: %s", code, stderr)
	}
	out, stderr, code = outs.run(tc, with("admin", "zk", "secure")...)
	var changed, total int
	if _, err := fmt.Sscanf(out[strings.Index(out, "changed the ACL of "):], "changed the ACL of %d of %d znodes", &changed, &total); code != 0 || err != nil || changed == 0 || changed != total {
		t.Fatalf("secure: exit %d: %s%s; want every znode changed", code, out, stderr)
	}
	out, stderr, code = outs.run(tc, with("admin", "zk", "secure")...)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("changed the ACL of 0 of %d znodes", total)) {
		t.Errorf("secure again: exit %d: %s%s; want nothing changed", code, out, stderr)
	}
	checkLockedDown(t, ctx, tc, cl, false, false)

	// The daemons, authenticated, keep working; so do commands with the
	// credentials, and those without are refused.
	if _, stderr, code := outs.run(tc, with("put", "k3", "v3")...); code != 0 {
		t.Errorf("put after securing: exit %d: %s", code, stderr)
	}
	for k, v := range map[string]string{"k1": "v1", "k2": "v2", "k3": "v3"} {
		if out, stderr, code := outs.run(tc, with("get", k)...); code != 0 || out != v+"\n" {
			t.Errorf("get %s after securing: exit %d, %q, %s", k, code, out, stderr)
		}
	}
	if _, stderr, code := outs.run(tc, "get", "k1"); code != exitFailed || !strings.Contains(stderr, "not authorised") {
		t.Errorf("get without credentials after securing: exit %d, %q", code, stderr)
	}
	// A data node restarted (new session, new registration) with the
	// creator ACL serves again.
	dataProc.Kill()
	dataProc.Args = append(dataProc.Args, "--zk-acl", "creator")
	tc.restart(dataProc)
	eventually(t, time.Minute, func() error {
		if _, stderr, code := outs.run(tc, with("put", "k4", "v4")...); code != 0 {
			return fmt.Errorf("put after the restart: exit %d: %s", code, stderr)
		}
		return nil
	})
	checkLockedDown(t, ctx, tc, cl, false, false)

	// And back: --open gives every znode the open ACL again.
	out, stderr, code = outs.run(tc, with("admin", "zk", "secure", "--open")...)
	if code != 0 || !strings.Contains(out, "to open") {
		t.Errorf("secure --open: exit %d: %s%s", code, out, stderr)
	}
	if out, stderr, code := outs.run(tc, "get", "k4"); code != 0 || out != "v4\n" {
		t.Errorf("get without credentials after --open: exit %d, %q, %s", code, out, stderr)
	}
	checkNoSecret(t, tc, outs)
}

// TestZKAuthUsage: a malformed --zk-auth or --zk-acl is a usage error
// (exit 2) whose line never repeats the password, wherever it came from.
func TestZKAuthUsage(t *testing.T) {
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad")
	if err := os.WriteFile(badFile, []byte("plain:"+zkSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "thunder.conf")
	if err := os.WriteFile(config, []byte("zk-auth = digest::"+zkSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--zk-auth", "digest::" + zkSecret, "get", "k"}, "the user is missing"},
		{[]string{"get", "--zk-auth", "sasl:u:" + zkSecret, "k"}, "digest is the only scheme"},
		{[]string{"get", "--zk-auth", "@" + badFile, "k"}, badFile},
		{[]string{"get", "--zk-auth", "@" + filepath.Join(dir, "missing"), "k"}, "no such file"},
		{[]string{"--config", config, "get", "k"}, "the user is missing"},
		{[]string{"get", "--zk-acl", "everyone", "k"}, "want creator, read or open"},
		{[]string{"get", "--zk-acl", "read", "k"}, "--zk-acl read needs --zk-auth"},
		{[]string{"admin", "zk", "secure", "--open", "--zk-acl", "read", "--zk-auth", "digest:u:" + zkSecret}, "exclude each other"},
	} {
		_, stderr, code := runCLI(t, nil, tc.args...)
		if code != exitUsage || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, zkSecret) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2, one line with %q and no password", tc.args, code, stderr, tc.want)
		}
	}
}
