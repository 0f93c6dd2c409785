package tlsauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// Files names the PEM files of a process's credentials: its certificate
// (the chain, leaf first), its private key, and the CA bundle that peers'
// certificates must chain to. The bundle may hold several CAs, which is how
// a cluster moves to a new CA without a gap.
type Files struct {
	Cert, Key, CA string
}

// Certs is a process's loaded credentials. ServerConfig and ClientConfig
// read the current files on every new connection, so Reload and Watch
// change what new connections use while open ones carry on. A nil *Certs
// stands for plain TCP: its configs are nil.
type Certs struct {
	files Files

	mu    sync.RWMutex
	cert  *tls.Certificate
	pool  *x509.CertPool
	stamp string // the files' sizes and modification times when loaded
}

// Load reads files; every one must be set.
func Load(files Files) (*Certs, error) {
	c := &Certs{files: files}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again. On error the credentials in use stay.
func (c *Certs) Reload() error {
	stamp, err := c.files.stamp()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(c.files.Cert, c.files.Key)
	if err != nil {
		// The error of LoadX509KeyPair names what is wrong, never the bytes.
		return fmt.Errorf("tls: certificate %s and key %s: %w", c.files.Cert, c.files.Key, err)
	}
	pem, err := os.ReadFile(c.files.CA)
	if err != nil {
		return fmt.Errorf("tls: CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("tls: CA bundle %s holds no PEM certificate", c.files.CA)
	}
	c.mu.Lock()
	c.cert, c.pool, c.stamp = &cert, pool, stamp
	c.mu.Unlock()
	return nil
}

// Watch reloads the files whenever their size or modification time
// changes, checking every interval, until ctx ends. A failed reload is
// logged and retried at the next change; the old credentials stay.
func (c *Certs) Watch(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stamp, err := c.files.stamp()
		c.mu.RLock()
		same := stamp == c.stamp
		c.mu.RUnlock()
		if err != nil || same {
			continue
		}
		if err := c.Reload(); err != nil {
			log.Error("tls: files changed but do not load; keeping the old ones", "err", err)
			c.mu.Lock()
			c.stamp = stamp // retry once they change again
			c.mu.Unlock()
			continue
		}
		log.Info("tls: files changed; new connections use them", "cert", c.files.Cert, "serial", c.Serial())
	}
}

// stamp sums up the files' sizes and modification times.
func (f Files) stamp() (string, error) {
	var s string
	for _, name := range []string{f.Cert, f.Key, f.CA} {
		fi, err := os.Stat(name)
		if err != nil {
			return "", fmt.Errorf("tls: %w", err)
		}
		s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

func (c *Certs) current() (*tls.Certificate, *x509.CertPool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert, c.pool
}

// Serial is the serial number of the certificate in use, in hex.
func (c *Certs) Serial() string {
	cert, _ := c.current()
	if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
		return leaf.SerialNumber.Text(16)
	}
	return ""
}

// ServerConfig is the tls.Config of a listener: TLS 1.3, and a client
// certificate signed by the CA bundle is required.
func (c *Certs) ServerConfig() *tls.Config {
	if c == nil {
		return nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := c.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    pool,
			}, nil
		},
	}
}

// ClientConfig is the tls.Config of a dialer: it presents the certificate
// in use and checks the server's against the current CA bundle and the
// host it dialed. The check is done in VerifyConnection, not by crypto/tls
// with fixed RootCAs, so a reloaded bundle applies to new connections.
func (c *Certs) ClientConfig() *tls.Config {
	if c == nil {
		return nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := c.current()
			return cert, nil
		},
		// Verified below against the bundle of the moment.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, pool := c.current()
			return verifyServer(cs, pool)
		},
	}
}

// ForHost is conf (a ClientConfig) for dialing host, a name or an IP
// address (unless conf names a server already): crypto/tls leaves
// ConnectionState.ServerName empty for an IP address, which sends no SNI,
// so the server's certificate is checked against the host given here.
func ForHost(conf *tls.Config, host string) *tls.Config {
	conf = conf.Clone()
	if conf.ServerName == "" {
		conf.ServerName = host
	}
	if verify := conf.VerifyConnection; verify != nil {
		name := conf.ServerName
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			cs.ServerName = name
			return verify(cs)
		}
	}
	return conf
}

func verifyServer(cs tls.ConnectionState, pool *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: server sent no certificate")
	}
	if cs.ServerName == "" {
		return errors.New("tls: no server name or address to check the server's certificate against")
	}
	inter := x509.NewCertPool()
	for _, ic := range cs.PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		DNSName: cs.ServerName, Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("tls: server certificate: %w", err)
	}
	return nil
}

// Role is a right a certificate grants, carried as an OU of its subject.
type Role string

// The roles; docs/security.md says what each may call.
const (
	RoleNode   Role = "node"
	RoleClient Role = "client"
	RoleAdmin  Role = "admin"
)

// Roles lists every role, in the order they are documented.
var Roles = []Role{RoleNode, RoleClient, RoleAdmin}

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	if r := Role(s); slices.Contains(Roles, r) {
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q: want node, client or admin", s)
}

// RolesOf is the roles a verified certificate grants: its subject's OUs
// that name a role; other OUs grant nothing.
func RolesOf(cert *x509.Certificate) []Role {
	var roles []Role
	for _, ou := range cert.Subject.OrganizationalUnit {
		if r, err := ParseRole(ou); err == nil && !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	return roles
}
