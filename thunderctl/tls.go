package main

import (
	"crypto/tls"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
	"github.com/thunderyurts/thunderyurts/wire/tlsauth"
)

// tlsFlags are the credentials of mutual TLS (docs/security.md), global so
// that every daemon and every command that calls nodes takes them.
func tlsFlags() []cli.Flag {
	return []cli.Flag{
		stringFlag("tls-cert", "", "mutual TLS: this process's certificate `FILE` (PEM; with --tls-key and --tls-ca)", nil),
		stringFlag("tls-key", "", "mutual TLS: the certificate's private key `FILE` (PEM)", nil),
		stringFlag("tls-ca", "", "mutual TLS: CA bundle `FILE` peers' certificates must chain to (PEM)", nil),
	}
}

// tlsCerts loads the --tls-* files: nil when none is given. Some but not
// all of them is a usage error, as is a file that does not load.
func tlsCerts(c *cli.Context) (*tlsauth.Certs, error) {
	files := tlsauth.Files{Cert: c.String("tls-cert"), Key: c.String("tls-key"), CA: c.String("tls-ca")}
	var missing []string
	for flag, v := range map[string]string{"--tls-cert": files.Cert, "--tls-key": files.Key, "--tls-ca": files.CA} {
		if v == "" {
			missing = append(missing, flag)
		}
	}
	switch len(missing) {
	case 3:
		return nil, nil
	case 0:
	default:
		slices.Sort(missing)
		return nil, usageIn(c, "TLS needs --tls-cert, --tls-key and --tls-ca together; missing %s", strings.Join(missing, " and "))
	}
	certs, err := tlsauth.Load(files)
	if err != nil {
		return nil, usageIn(c, "%v", err)
	}
	return certs, nil
}

// clientTLS is the dialing side of the --tls-* files: nil when none is
// given.
func clientTLS(c *cli.Context) (*tls.Config, error) {
	certs, err := tlsCerts(c)
	return certs.ClientConfig(), err
}

// nodesOf calls data nodes with the command's credentials.
func nodesOf(c *cli.Context) (nodeclient.Nodes, error) {
	conf, err := clientTLS(c)
	return nodeclient.Nodes{TLS: conf}, err
}
