package ops

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/wire/tlsauth"
)

// serveWith serves with the given HTTP limits (conns 0: the default).
func serveWith(t *testing.T, l httpLimits) *Server {
	t.Helper()
	saved := limits
	if l.conns == 0 {
		l.conns = saved.conns
	}
	limits = l
	t.Cleanup(func() { limits = saved })
	s, err := Serve("127.0.0.1:0", NewRegistry(), func() error { return nil }, slog.New(slog.DiscardHandler), Options{Pprof: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// waitClosed fails the test unless the server closes c within patience.
func waitClosed(t *testing.T, c net.Conn, patience time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(patience))
	if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("server kept the connection open for %v", patience)
	}
}

// send dials addr and writes req; the connection closes at cleanup.
func send(t *testing.T, addr, req string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestServerSetsLimits(t *testing.T) {
	l := httpLimits{readHeader: 1 * time.Second, read: 2 * time.Second, write: 3 * time.Second, idle: 4 * time.Second, conns: 8}
	srv := serveWith(t, l).srv
	if srv.ReadHeaderTimeout != l.readHeader || srv.ReadTimeout != l.read || srv.WriteTimeout != l.write || srv.IdleTimeout != l.idle || srv.MaxHeaderBytes != maxHeaderBytes {
		t.Fatalf("limits not set: header %v read %v write %v idle %v max header %d", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
}

func TestServerClosesSlowAndIdleClients(t *testing.T) {
	// Each timeout under test is short, the others long, so only it can
	// close the connection.
	long := time.Minute
	t.Run("half-sent header", func(t *testing.T) {
		s := serveWith(t, httpLimits{readHeader: 300 * time.Millisecond, read: long, write: long, idle: long})
		c := send(t, s.Addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		waitClosed(t, c, 10*time.Second)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		s := serveWith(t, httpLimits{readHeader: long, read: long, write: long, idle: 300 * time.Millisecond})
		c := send(t, s.Addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("status %d, close %v: want a kept-alive 200", resp.StatusCode, resp.Close)
		}
		waitClosed(t, c, 10*time.Second)
	})
}

func TestProfilesOutlastWriteTimeout(t *testing.T) {
	// Long enough that a loaded machine still sends the request in time.
	d := time.Second
	s := serveWith(t, httpLimits{readHeader: d, read: d, write: d, idle: d})
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + s.Addr() + "/debug/pprof/profile?seconds=2")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("2 s profile past a 1 s write timeout: status %d, %d bytes, err %v", resp.StatusCode, len(body), err)
	}
	resp, err = client.Get("http://" + s.Addr() + "/debug/pprof/profile?seconds=100000")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("overlong profile: status %d, want 400", resp.StatusCode)
	}
}

func TestServerBoundsConnections(t *testing.T) {
	long := time.Minute
	s := serveWith(t, httpLimits{readHeader: long, read: long, write: long, idle: long, conns: 3})
	var idle []net.Conn
	for range 3 {
		idle = append(idle, send(t, s.Addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\n"))
	}
	get := func(patience time.Duration) error {
		c := send(t, s.Addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(patience))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			_ = resp.Body.Close()
		}
		return err
	}
	if err := get(300 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a fourth connection was served beside three open ones (err %v)", err)
	}
	_ = idle[0].Close()
	if err := get(10 * time.Second); err != nil {
		t.Fatalf("no connection served after one of the three closed: %v", err)
	}
}

func TestProfilesOffUnlessEnabled(t *testing.T) {
	s, err := Serve("127.0.0.1:0", NewRegistry(), func() error { return nil }, slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	client := &http.Client{Timeout: 30 * time.Second}
	for path, want := range map[string]int{"/debug/pprof/": http.StatusNotFound, "/debug/pprof/heap": http.StatusNotFound, "/metrics": http.StatusOK} {
		resp, err := client.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s without --enable-pprof: status %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestHTTPTLSNeedsAClientCertificate(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := tlsauth.InitCA(dir, 1, now); err != nil {
		t.Fatal(err)
	}
	load := func(name string, role tlsauth.Role) *tlsauth.Certs {
		cert, err := tlsauth.Issue(dir, dir, tlsauth.Request{Name: name, Roles: []tlsauth.Role{role}, Hosts: []string{"127.0.0.1"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		c, err := tlsauth.Load(tlsauth.Files{Cert: cert, Key: filepath.Join(dir, name+"-key.pem"), CA: filepath.Join(dir, tlsauth.CACertFile)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	s, err := Serve("127.0.0.1:0", NewRegistry(), func() error { return nil }, slog.New(slog.DiscardHandler), Options{TLS: load("node", tlsauth.RoleNode).ServerConfig(), Pprof: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	get := func(url string, conf *tls.Config) error {
		if conf != nil {
			conf = tlsauth.ForHost(conf, "127.0.0.1")
		}
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d %s", resp.StatusCode, b)
		}
		return nil
	}
	scraper := load("scraper", tlsauth.RoleClient).ClientConfig()
	if err := get("https://"+s.Addr()+"/metrics", scraper); err != nil {
		t.Fatalf("https with a certificate of the CA: %v", err)
	}
	// Profiles show memory: an admin certificate only.
	if err := get("https://"+s.Addr()+"/debug/pprof/", scraper); err == nil {
		t.Error("a client certificate got /debug/pprof")
	}
	if err := get("https://"+s.Addr()+"/debug/pprof/", load("operator", tlsauth.RoleAdmin).ClientConfig()); err != nil {
		t.Errorf("an admin certificate: /debug/pprof: %v", err)
	}
	noCert := scraper.Clone()
	noCert.GetClientCertificate = nil
	if err := get("https://"+s.Addr()+"/metrics", noCert); err == nil {
		t.Error("https without a client certificate was served")
	}
	if err := get("http://"+s.Addr()+"/metrics", nil); err == nil {
		t.Error("plain http was served")
	}
}
