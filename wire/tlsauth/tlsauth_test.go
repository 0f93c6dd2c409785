package tlsauth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRolesOfReadsOnlyKnownOUs(t *testing.T) {
	cert := &x509.Certificate{Subject: pkix.Name{OrganizationalUnit: []string{"admin", "ops", "client", "admin", "Node"}}}
	if got, want := RolesOf(cert), []Role{RoleAdmin, RoleClient}; !slices.Equal(got, want) {
		t.Fatalf("roles %v, want %v", got, want)
	}
	if _, err := ParseRole("root"); err == nil {
		t.Fatal("role root accepted")
	}
}

func TestIssueAndLoad(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := InitCA(dir, 1, now); err != nil {
		t.Fatal(err)
	}
	if err := InitCA(dir, 1, now); err == nil {
		t.Fatal("InitCA replaced an existing CA")
	}
	for _, bad := range []string{"", "../x", "a/b"} {
		if _, err := Issue(dir, dir, Request{Name: bad, Roles: []Role{RoleClient}, NotBefore: now, NotAfter: now.Add(time.Hour)}); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	cert, err := Issue(dir, dir, Request{Name: "n1", Roles: []Role{RoleNode}, Hosts: []string{"10.0.0.2", "n1.example"}, NotBefore: now, NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "n1-key.pem")
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi.Mode(), err)
	}
	c, err := Load(Files{Cert: cert, Key: key, CA: filepath.Join(dir, CACertFile)})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(c.cert.Certificate[0])
	if !slices.Equal(RolesOf(leaf), []Role{RoleNode}) || len(leaf.IPAddresses) != 1 || !slices.Equal(leaf.DNSNames, []string{"n1.example"}) ||
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Fatalf("node certificate: OU %v, IPs %v, DNS %v, EKU %v", leaf.Subject.OrganizationalUnit, leaf.IPAddresses, leaf.DNSNames, leaf.ExtKeyUsage)
	}
	if leaf.SerialNumber.Text(16) != c.Serial() {
		t.Fatal("Serial is not the loaded certificate's")
	}
}

func TestLoadErrorsNameFilesNotContents(t *testing.T) {
	dir := t.TempDir()
	if err := InitCA(dir, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	caKey := filepath.Join(dir, CAKeyFile)
	secret, err := os.ReadFile(caKey)
	if err != nil {
		t.Fatal(err)
	}
	// The CA key given as a certificate, and as a CA bundle.
	for _, files := range []Files{
		{Cert: caKey, Key: caKey, CA: filepath.Join(dir, CACertFile)},
		{Cert: filepath.Join(dir, CACertFile), Key: caKey, CA: caKey},
	} {
		_, err := Load(files)
		if err == nil {
			t.Fatalf("%+v loaded", files)
		}
		body := strings.Split(string(secret), "\n")[1]
		if strings.Contains(err.Error(), body[:20]) {
			t.Fatalf("error shows key material: %v", err)
		}
	}
}
