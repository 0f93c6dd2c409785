package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
	"github.com/thunderyurts/thunderyurts/wire/tlsauth"
)

// testPKI is a CA made by `thunderctl admin certs init` in a directory of
// the test, and the certificates it issued there.
type testPKI struct {
	t   *testing.T
	dir string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{t: t, dir: t.TempDir()}
	if out, stderr, code := runCLI(t, nil, "admin", "certs", "init", "--dir", p.dir, "--days", "2"); code != 0 {
		t.Fatalf("certs init: exit %d: %s%s", code, out, stderr)
	}
	return p
}

// issue makes certificate name with roles (comma-separated) through the
// CLI and returns its flags.
func (p *testPKI) issue(name, roles string) tlsauth.Files {
	p.t.Helper()
	if out, stderr, code := runCLI(p.t, nil, "admin", "certs", "issue", "--dir", p.dir, "--role", roles, "--name", name,
		"--hosts", "127.0.0.1,localhost", "--days", "1"); code != 0 {
		p.t.Fatalf("certs issue %s: exit %d: %s%s", name, code, out, stderr)
	}
	return p.files(name)
}

func (p *testPKI) files(name string) tlsauth.Files {
	return tlsauth.Files{Cert: filepath.Join(p.dir, name+".pem"), Key: filepath.Join(p.dir, name+"-key.pem"), CA: filepath.Join(p.dir, tlsauth.CACertFile)}
}

func tlsArgs(f tlsauth.Files) []string {
	return []string{"--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA}
}

func (p *testPKI) clientConfig(f tlsauth.Files) *tls.Config {
	p.t.Helper()
	c, err := tlsauth.Load(f)
	if err != nil {
		p.t.Fatal(err)
	}
	return c.ClientConfig()
}

// startSecureCluster runs a coordinator and group g1 of two data nodes,
// every daemon with node's certificate, and waits until it serves.
func startSecureCluster(t *testing.T, node tlsauth.Files) (*testCluster, *coord.Cluster, []*proc) {
	tc := newTestCluster(t)
	creds := tlsArgs(node)
	procs := []*proc{tc.start("coord-1", append([]string{"serve", "coord", "--slots", "16", "--assign-delay", "500ms", "--replication-factor", "2"}, creds...)...)}
	for _, name := range []string{"data-a", "data-b"} {
		procs = append(procs, tc.dataNode(name, "g1", creds...))
	}
	cl := tc.coordCluster()
	tc.waitServing(cl, 30*time.Second)
	tc.waitGroup(cl, "g1", 30*time.Second, func(g *coord.Group) bool { return len(g.ISR) == 2 })
	return tc, cl, procs
}

func TestSecureRefusesClientsWithoutAValidCertificate(t *testing.T) {
	ca := newTestPKI(t)
	tc, _, _ := startSecureCluster(t, ca.issue("node", "node"))
	admin := tlsArgs(ca.issue("admin", "admin"))

	other := newTestPKI(t)
	intruder := other.issue("intruder", "admin")
	intruder.CA = ca.files("x").CA // it trusts the cluster: only the cluster can refuse it
	expired := ca.files("expired")
	if _, err := tlsauth.Issue(ca.dir, ca.dir, tlsauth.Request{Name: "expired", Roles: []tlsauth.Role{tlsauth.RoleAdmin},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for name, creds := range map[string][]string{"no certificate": nil, "another CA": tlsArgs(intruder), "expired": tlsArgs(expired)} {
		for _, cmd := range [][]string{{"put", "k", "v"}, {"get", "k"}, {"scan"}} {
			_, stderr, code := tc.cli(nil, append(append([]string{"--timeout", "3s"}, creds...), cmd...)...)
			if code != 1 {
				t.Errorf("%s: %s: exit %d, want 1 (%s)", name, cmd[0], code, stderr)
			}
		}
	}
	// Half the flags is a usage error naming what is missing.
	_, stderr, code := tc.cli(nil, "--tls-cert", intruder.Cert, "get", "k")
	if code != 2 || !strings.Contains(stderr, "missing --tls-ca and --tls-key") {
		t.Errorf("--tls-cert alone: exit %d: %s", code, stderr)
	}
	// Nothing was written.
	out, stderr, code := tc.cli(nil, append(admin, "scan")...)
	if code != 0 || out != "" {
		t.Errorf("scan with the admin certificate: exit %d, %q %s", code, out, stderr)
	}
	if _, stderr, code := tc.cli(nil, append(admin, "put", "k", "v")...); code != 0 {
		t.Fatalf("admin put: exit %d: %s", code, stderr)
	}
}

func TestSecureClientCertificateReadsAndWritesButCannotAdminister(t *testing.T) {
	ca := newTestPKI(t)
	tc, cl, procs := startSecureCluster(t, ca.issue("node", "node"))
	clientFiles, adminFiles := ca.issue("app", "client"), ca.issue("ops", "admin")
	clientArgs, adminArgs := tlsArgs(clientFiles), tlsArgs(adminFiles)

	if _, stderr, code := tc.cli(nil, append(clientArgs, "put", "k", "v")...); code != 0 {
		t.Fatalf("client put: exit %d: %s", code, stderr)
	}
	if out, stderr, code := tc.cli(nil, append(clientArgs, "get", "k")...); code != 0 || out != "v\n" {
		t.Fatalf("client get: exit %d %q: %s", code, out, stderr)
	}
	// Routes from a coordinator over TLS.
	if out, stderr, code := tc.cli(nil, append(clientArgs, "--coord", procs[0].addr, "get", "k")...); code != 0 || out != "v\n" {
		t.Fatalf("client get through --coord: exit %d %q: %s", code, out, stderr)
	}

	// Replicate and Handover, called directly.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := tc.waitGroup(cl, "g1", 10*time.Second, func(g *coord.Group) bool { return g.Primary != "" })
	rt, err := cl.Routes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	primary := rt.Groups["g1"].PrimaryAddr
	clientConf := ca.clientConfig(clientFiles)
	conn, err := wire.Dial(ctx, primary, wire.DialOptions{TLS: clientConf})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rpc, err := wire.NewDRPCDataClient(conn).Replicate(ctx)
	if err == nil {
		err = rpc.Send(&wire.FollowerMessage{Body: &wire.FollowerMessage_Hello{Hello: &wire.Hello{Group: "g1", NodeId: "made-up", Epoch: g.Epoch}}})
	}
	if err == nil {
		_, err = rpc.Recv()
	}
	if !errors.Is(wire.FromRPC(err), wire.ErrPermissionDenied) {
		t.Errorf("Replicate with a client certificate: %v, want permission denied", err)
	}
	_, err = nodeclient.Nodes{TLS: clientConf}.Handover(ctx, primary, g.Epoch, "")
	if !errors.Is(err, wire.ErrPermissionDenied) || !strings.Contains(err.Error(), "Handover needs an admin certificate; this one is client") {
		t.Errorf("Handover with a client certificate: %v, want permission denied", err)
	}

	// Admin commands that call nodes.
	backups := t.TempDir()
	for _, cmd := range [][]string{{"admin", "backup", "run", "--to", backups}, {"admin", "failover", "--group", "g1"}} {
		_, stderr, code := tc.cli(nil, append(append([]string{}, clientArgs...), cmd...)...)
		if code != 1 || !strings.Contains(stderr, "needs an admin") {
			t.Errorf("%v with a client certificate: exit %d: %s", cmd, code, stderr)
		}
		if _, stderr, code := tc.cli(nil, append(append([]string{}, adminArgs...), cmd...)...); code != 0 {
			t.Errorf("%v with an admin certificate: exit %d: %s", cmd, code, stderr)
		}
	}
	// A restore writes through Data.Load: admins only.
	ids, err := os.ReadDir(backups)
	if err != nil || len(ids) != 1 {
		t.Fatalf("backups made: %v, %v", ids, err)
	}
	restore := []string{"admin", "restore", "--overwrite", "--from", filepath.Join(backups, ids[0].Name())}
	if _, stderr, code := tc.cli(nil, append(append([]string{}, clientArgs...), restore...)...); code != 1 || !strings.Contains(stderr, "Load needs an admin certificate") {
		t.Errorf("restore with a client certificate: exit %d: %s", code, stderr)
	}
	if _, stderr, code := tc.cli(nil, append(append([]string{}, adminArgs...), restore...)...); code != 0 {
		t.Errorf("restore with an admin certificate: exit %d: %s", code, stderr)
	}
	if g2 := tc.waitGroup(cl, "g1", 10*time.Second, func(*coord.Group) bool { return true }); g2.Epoch == g.Epoch {
		t.Errorf("graceful failover with the admin certificate left epoch %d", g.Epoch)
	}
	// The nodes replicated to each other all along.
	for _, p := range procs {
		if state := p.ExitState(); state != "" {
			t.Errorf("%s exited: %s", p.Name, state)
		}
	}
}

// servedSerial is the serial of the certificate the daemon at addr
// presents to a new connection.
func servedSerial(addr string, conf *tls.Config) (string, error) {
	d := tls.Dialer{Config: tlsauth.ForHost(conf, "127.0.0.1")}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

func TestSecureCertificateRotationOnSIGHUP(t *testing.T) {
	ca := newTestPKI(t)
	node := ca.issue("node", "node")
	tc, cl, procs := startSecureCluster(t, node)
	appFiles := ca.issue("app", "client")
	app, err := tlsauth.Load(appFiles)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kv, err := client.New(ctx, cl, client.Options{Timeout: 20 * time.Second, TLS: app.ClientConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()

	// Puts run across both rotations; not one may fail.
	var puts, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := kv.Put(ctx, []byte(fmt.Sprintf("w%d-%d", w, i)), []byte("v")); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				puts.Add(1)
			}
		}()
	}
	// hupAll sends SIGHUP to every daemon and waits until each logged
	// its reload.
	hups := 0
	hupAll := func() {
		t.Helper()
		hups++
		for _, p := range procs {
			if err := p.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range procs {
			eventually(t, 20*time.Second, func() error {
				if n := strings.Count(string(mustRead(t, p.Log)), "SIGHUP: TLS files reloaded"); n < hups {
					return fmt.Errorf("%s logged %d reloads, want %d", p.Name, n, hups)
				}
				return nil
			})
		}
	}
	// waitServed waits until every daemon presents a certificate other
	// than old to new connections, and returns the new serials.
	waitServed := func(old map[string]string) map[string]string {
		t.Helper()
		now := map[string]string{}
		eventually(t, 20*time.Second, func() error {
			for _, p := range procs {
				s, err := servedSerial(p.addr, app.ClientConfig())
				if err != nil {
					return err
				}
				if s == old[p.Name] {
					return fmt.Errorf("%s still presents %s", p.Name, s)
				}
				now[p.Name] = s
			}
			return nil
		})
		return now
	}
	before := waitServed(nil)
	eventually(t, 10*time.Second, func() error {
		if puts.Load() < 200 {
			return errors.New("puts not going yet")
		}
		return nil
	})

	// 1. A new certificate of the same CA, then SIGHUP.
	ca.issue("node", "node")
	hupAll()
	afterSame := waitServed(before)

	// 2. A new CA: first every process trusts both, then the nodes take a
	// certificate of the new one.
	next := newTestPKI(t)
	bundle := append(mustRead(t, ca.files("x").CA), mustRead(t, next.files("x").CA)...)
	if err := os.WriteFile(node.CA, bundle, 0o644); err != nil { // the daemons' and the app's bundle
		t.Fatal(err)
	}
	if err := app.Reload(); err != nil {
		t.Fatal(err)
	}
	hupAll()
	next.issue("node", "node")
	for _, f := range []string{"node.pem", "node-key.pem"} {
		if err := os.Rename(filepath.Join(next.dir, f), filepath.Join(ca.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	hupAll()
	waitServed(afterSame)

	// New connections work under the new CA: a fresh CLI get, and puts.
	n := puts.Load()
	eventually(t, 20*time.Second, func() error {
		if puts.Load() < n+200 {
			return errors.New("puts stalled after the rotation")
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d of %d puts failed across the rotations; first: %v", f, puts.Load(), firstErr.Load())
	}
	if out, stderr, code := tc.cli(nil, append(tlsArgs(appFiles), "get", "w0-0")...); code != 0 || out != "v\n" {
		t.Fatalf("get on a new connection after the rotation: exit %d %q: %s", code, out, stderr)
	}
	t.Logf("%d puts, 0 failed, across two rotations", puts.Load())
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSecureUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "coord", "--http", "127.0.0.1:1", "--http-tls"}, "--http-tls needs --tls-cert, --tls-key and --tls-ca"},
		{[]string{"--tls-key", "k.pem", "--tls-ca", "ca.pem", "serve", "data", "--group", "g1", "--dir", dir}, "missing --tls-cert"},
		{[]string{"--tls-cert", "nope.pem", "--tls-key", "nope-key.pem", "--tls-ca", "ca.pem", "get", "k"}, "nope.pem"},
		{[]string{"admin", "certs", "issue", "--dir", dir, "--role", "root", "--name", "x"}, `unknown role "root"`},
	} {
		_, stderr, code := runCLI(t, nil, c.args...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}

// TestSecureRebalanceMovesSlotsOverTLS: a migration's target dials the
// source's primary, and the coordinator asks nodes for their status, all
// with node certificates; the keys come through.
func TestSecureRebalanceMovesSlotsOverTLS(t *testing.T) {
	ca := newTestPKI(t)
	node := ca.issue("node", "node")
	tc, cl, _ := startSecureCluster(t, node)
	adminArgs := tlsArgs(ca.issue("ops", "admin"))
	keys := make([][]byte, 300)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("k%03d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kv, err := client.New(ctx, cl, client.Options{Timeout: 20 * time.Second, TLS: ca.clientConfig(ca.issue("app", "client"))})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	for _, k := range keys {
		if err := kv.Put(ctx, k, k); err != nil {
			t.Fatal(err)
		}
	}
	tc.dataNode("data-g2", "g2", tlsArgs(node)...)
	tc.waitGroup(cl, "g2", 30*time.Second, func(g *coord.Group) bool { return g.Primary != "" })
	if out, stderr, code := runCLIWithin(t, 3*time.Minute, nil, append(append([]string{"--zk", tc.zk.Addr(), "--cluster", tc.name, "--timeout", "60s"}, adminArgs...), "admin", "rebalance")...); code != 0 {
		t.Fatalf("admin rebalance: exit %d\n%s\n%s", code, out, stderr)
	}
	table, _, err := cl.SlotTable(ctx)
	if err != nil || len(table.SlotsOf("g2")) == 0 {
		t.Fatalf("g2 owns no slots after the rebalance (%v)", err)
	}
	for _, k := range keys {
		if v, err := kv.Get(ctx, k); err != nil || string(v) != string(k) {
			t.Fatalf("get %s after the rebalance: %q, %v", k, v, err)
		}
	}
}
