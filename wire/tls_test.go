package wire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"storj.io/drpc"

	"github.com/thunderyurts/thunderyurts/internal/poll"
	"github.com/thunderyurts/thunderyurts/wire/tlsauth"
)

// pki is a CA in a directory of the test, issuing certificates into it.
type pki struct {
	t   *testing.T
	dir string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{t: t, dir: t.TempDir()}
	if err := tlsauth.InitCA(p.dir, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	return p
}

// issue writes NAME.pem and NAME-key.pem, valid from notBefore to
// notAfter (zero: an hour ago to a day ahead), and returns their files with
// this CA as the bundle.
func (p *pki) issue(name string, roles []tlsauth.Role, notBefore, notAfter time.Time) tlsauth.Files {
	p.t.Helper()
	if notBefore.IsZero() {
		notBefore, notAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	}
	cert, err := tlsauth.Issue(p.dir, p.dir, tlsauth.Request{Name: name, Roles: roles, Hosts: []string{"127.0.0.1", "localhost"}, NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		p.t.Fatal(err)
	}
	return tlsauth.Files{Cert: cert, Key: strings.TrimSuffix(cert, ".pem") + "-key.pem", CA: filepath.Join(p.dir, tlsauth.CACertFile)}
}

func (p *pki) load(files tlsauth.Files) *tlsauth.Certs {
	p.t.Helper()
	c, err := tlsauth.Load(files)
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

// counting is echo that counts the calls that reached it.
type counting struct{ calls atomic.Int64 }

func (h *counting) HandleRPC(stream drpc.Stream, rpc string) error {
	h.calls.Add(1)
	return echo{}.HandleRPC(stream, rpc)
}

// serveTLS serves h with mutual TLS by certs until the test ends.
func serveTLS(t *testing.T, certs *tlsauth.Certs, h drpc.Handler) string {
	t.Helper()
	return serveHandler(t, h, ServerOptions{TLS: certs.ServerConfig(), Logger: slog.New(slog.DiscardHandler)})
}

// tlsCall makes one round trip of rpc with conf (nil: plain TCP) and
// returns its error.
func tlsCall(t *testing.T, addr, rpc string, conf *tls.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := Dial(ctx, addr, DialOptions{TLS: conf})
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := conn.NewStream(ctx, rpc, rawEncoding{})
	if err != nil {
		return err
	}
	b := []byte("hello")
	if err := stream.MsgSend(&b, rawEncoding{}); err != nil {
		return err
	}
	if err := stream.MsgRecv(&b, rawEncoding{}); err != nil {
		return FromRPC(err)
	}
	return nil
}

const (
	rpcStream    = "/thunderyurts.wire.Data/Stream"
	rpcReplicate = "/thunderyurts.wire.Data/Replicate"
	rpcHandover  = "/thunderyurts.wire.Data/Handover"
	rpcStatus    = "/thunderyurts.wire.Data/Status"
	rpcLoad      = "/thunderyurts.wire.Data/Load"
)

func TestTLSRefusesPeersWithoutAValidCertificate(t *testing.T) {
	ca := newPKI(t)
	h := &counting{}
	addr := serveTLS(t, ca.load(ca.issue("node", []tlsauth.Role{tlsauth.RoleNode}, time.Time{}, time.Time{})), h)
	good := ca.load(ca.issue("client", []tlsauth.Role{tlsauth.RoleClient}, time.Time{}, time.Time{}))
	if err := tlsCall(t, addr, rpcStream, good.ClientConfig()); err != nil {
		t.Fatalf("client certificate of the CA: %v", err)
	}

	other := newPKI(t)
	otherCert := other.issue("intruder", []tlsauth.Role{tlsauth.RoleAdmin}, time.Time{}, time.Time{})
	// The intruder trusts the real CA, so only the server can refuse it.
	otherCert.CA = filepath.Join(ca.dir, tlsauth.CACertFile)
	expired := ca.issue("expired", []tlsauth.Role{tlsauth.RoleAdmin}, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	noCert := good.ClientConfig()
	noCert.GetClientCertificate = nil

	before := h.calls.Load()
	for name, conf := range map[string]*tls.Config{
		"plain TCP":  nil,
		"no cert":    noCert,
		"another CA": other.load(otherCert).ClientConfig(),
		"expired":    ca.load(expired).ClientConfig(),
	} {
		if err := tlsCall(t, addr, rpcStream, conf); err == nil {
			t.Errorf("%s: call went through", name)
		}
	}
	if n := h.calls.Load() - before; n != 0 {
		t.Errorf("%d refused calls reached the handler", n)
	}
}

func TestTLSRolesPerRPC(t *testing.T) {
	ca := newPKI(t)
	h := &counting{}
	addr := serveTLS(t, ca.load(ca.issue("node", []tlsauth.Role{tlsauth.RoleNode}, time.Time{}, time.Time{})), h)
	conf := func(name string, roles ...tlsauth.Role) *tls.Config {
		return ca.load(ca.issue(name, roles, time.Time{}, time.Time{})).ClientConfig()
	}
	clientConf, adminConf, nodeConf, noRole := conf("client", tlsauth.RoleClient), conf("admin", tlsauth.RoleAdmin), conf("node-2", tlsauth.RoleNode), conf("nobody")
	both := conf("both", tlsauth.RoleClient, tlsauth.RoleAdmin)
	for _, c := range []struct {
		name, rpc string
		conf      *tls.Config
		ok        bool
	}{
		{"client Stream", rpcStream, clientConf, true},
		{"client Status", rpcStatus, clientConf, true},
		{"client Replicate", rpcReplicate, clientConf, false},
		{"client Handover", rpcHandover, clientConf, false},
		{"admin Handover", rpcHandover, adminConf, true},
		{"admin Replicate", rpcReplicate, adminConf, false},
		{"client+admin Handover", rpcHandover, both, true},
		{"node Replicate", rpcReplicate, nodeConf, true},
		{"node Handover", rpcHandover, nodeConf, false},
		{"admin Load", rpcLoad, adminConf, true},
		{"client Load", rpcLoad, clientConf, false},
		{"node Load", rpcLoad, nodeConf, false},
		{"no role Stream", rpcStream, noRole, false},
		{"no role Status", rpcStatus, noRole, true},
		{"unknown RPC", "/thunderyurts.wire.Data/Nope", adminConf, false},
	} {
		before := h.calls.Load()
		err := tlsCall(t, addr, c.rpc, c.conf)
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok {
			if !errors.Is(err, ErrPermissionDenied) {
				t.Errorf("%s: %v, want permission denied", c.name, err)
			}
			if h.calls.Load() != before {
				t.Errorf("%s: the refused call reached the handler", c.name)
			}
		}
	}
	err := tlsCall(t, addr, rpcReplicate, clientConf)
	if want := "Data/Replicate needs a node certificate; this one is client"; err == nil || err.Error() != want {
		t.Errorf("refusal reads %q, want %q", err, want)
	}
}

// servedSerial is the serial of the certificate the server at addr
// presents to a new connection.
func servedSerial(t *testing.T, addr string, conf *tls.Config) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, tlsauth.ForHost(conf, "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

func TestTLSReloadServesNewCertificatesToNewConnections(t *testing.T) {
	ca := newPKI(t)
	files := ca.issue("node", []tlsauth.Role{tlsauth.RoleNode}, time.Time{}, time.Time{})
	server := ca.load(files)
	addr := serveTLS(t, server, echo{})
	clientConf := ca.load(ca.issue("client", []tlsauth.Role{tlsauth.RoleClient}, time.Time{}, time.Time{})).ClientConfig()
	first := servedSerial(t, addr, clientConf)
	if first != server.Serial() {
		t.Fatalf("served serial %s, loaded %s", first, server.Serial())
	}

	// A stream open across the rotation keeps working.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := Dial(ctx, addr, DialOptions{TLS: clientConf})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := conn.NewStream(ctx, rpcStream, rawEncoding{})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip := func() {
		t.Helper()
		b := []byte("x")
		if err := stream.MsgSend(&b, rawEncoding{}); err != nil {
			t.Fatal(err)
		}
		if err := stream.MsgRecv(&b, rawEncoding{}); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()

	// SIGHUP's path: the files are replaced, then Reload.
	ca.issue("node", []tlsauth.Role{tlsauth.RoleNode}, time.Time{}, time.Time{})
	if err := server.Reload(); err != nil {
		t.Fatal(err)
	}
	second := servedSerial(t, addr, clientConf)
	if second == first || second != server.Serial() {
		t.Fatalf("after reload the server presents %s (before %s, loaded %s)", second, first, server.Serial())
	}
	roundTrip()

	// The watcher's path: the files change and nobody calls Reload. A
	// later modification time makes the change visible on any file system.
	wctx, stop := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { defer close(watched); server.Watch(wctx, 20*time.Millisecond, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() { stop(); <-watched })
	ca.issue("node", []tlsauth.Role{tlsauth.RoleNode}, time.Time{}, time.Time{})
	later := time.Now().Add(time.Minute)
	for _, f := range []string{files.Cert, files.Key} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	poll.UntilNil(t, 10*time.Second, func() error {
		if s := servedSerial(t, addr, clientConf); s == second {
			return errors.New("still the old certificate")
		}
		return nil
	})
	roundTrip()
}

func TestTLSClientChecksTheServer(t *testing.T) {
	ca := newPKI(t)
	addr := serveTLS(t, ca.load(ca.issue("node", []tlsauth.Role{tlsauth.RoleNode}, time.Time{}, time.Time{})), echo{})
	// A client of another CA does not trust this server.
	other := newPKI(t)
	if err := tlsCall(t, addr, rpcStatus, other.load(other.issue("client", []tlsauth.Role{tlsauth.RoleClient}, time.Time{}, time.Time{})).ClientConfig()); err == nil {
		t.Fatal("a server of another CA was trusted")
	}
	// A client certificate cannot serve: it is not issued for server auth.
	cli := ca.issue("client", []tlsauth.Role{tlsauth.RoleClient}, time.Time{}, time.Time{})
	fake := serveTLS(t, ca.load(cli), echo{})
	err := tlsCall(t, fake, rpcStatus, ca.load(cli).ClientConfig())
	var inv x509.CertificateInvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("server with a client certificate: %v, want an invalid certificate", err)
	}
}

// A certificate of the CA for another host does not pass for the one
// dialed, by IP address as by name.
func TestTLSClientChecksTheServersHost(t *testing.T) {
	ca := newPKI(t)
	cert, err := tlsauth.Issue(ca.dir, ca.dir, tlsauth.Request{Name: "elsewhere", Roles: []tlsauth.Role{tlsauth.RoleNode},
		Hosts: []string{"10.9.9.9", "elsewhere.example"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	files := tlsauth.Files{Cert: cert, Key: strings.TrimSuffix(cert, ".pem") + "-key.pem", CA: filepath.Join(ca.dir, tlsauth.CACertFile)}
	addr := serveTLS(t, ca.load(files), echo{})
	conf := ca.load(ca.issue("client", []tlsauth.Role{tlsauth.RoleClient}, time.Time{}, time.Time{})).ClientConfig()
	_, port, _ := net.SplitHostPort(addr)
	for _, a := range []string{addr, net.JoinHostPort("localhost", port)} {
		var host x509.HostnameError
		if err := tlsCall(t, a, rpcStatus, conf); !errors.As(err, &host) {
			t.Errorf("dial %s, served for another host: %v, want a host mismatch", a, err)
		}
	}
}

func TestEveryRPCHasItsRoles(t *testing.T) {
	for _, d := range []drpc.Description{DRPCDataDescription{}, DRPCRouteDescription{}} {
		for i := 0; i < d.NumMethods(); i++ {
			rpc, _, _, _, _ := d.Method(i)
			if _, ok := rpcRoles[rpc]; !ok {
				t.Errorf("%s has no roles in rpcRoles: TLS peers cannot call it", rpc)
			}
		}
	}
}
