package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/wire/tlsauth"
)

// certsCommand makes a CA and certificates for mutual TLS
// (docs/security.md).
func certsCommand() *cli.Command {
	dir := func() cli.Flag {
		return requiredFlag("dir", "CA directory `PATH` (ca.pem, ca-key.pem)", nonEmpty)
	}
	return &cli.Command{
		Name:  "certs",
		Usage: "make a CA and certificates for mutual TLS (node, client and admin roles)",
		Subcommands: []*cli.Command{
			{
				Name:  "init",
				Usage: "make a new CA in --dir: ca.pem (give it to every process as --tls-ca) and ca-key.pem (keep it secret)",
				Flags: []cli.Flag{dir(), intFlag("days", 3650, 1, 100*365, "the CA is valid for `N` days")},
				Action: func(c *cli.Context) error {
					if err := tlsauth.InitCA(c.String("dir"), c.Int("days"), time.Now()); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "CA written to %s/%s (its key %s is 0600: keep it off the cluster's machines)\n", c.String("dir"), tlsauth.CACertFile, tlsauth.CAKeyFile)
					return nil
				},
			},
			{
				Name:  "issue",
				Usage: "issue a certificate signed by the CA in --dir: NAME.pem and NAME-key.pem in --out (default --dir)",
				Flags: []cli.Flag{
					dir(),
					requiredFlag("role", "`ROLES` the certificate grants: node, client or admin (comma-separated for several)", checkRoles),
					requiredFlag("name", "the certificate's common `NAME`, also its file name", nonEmpty),
					stringFlag("hosts", "", "`HOSTS` (DNS names, IPs, comma-separated) a node certificate serves as: every address peers dial", nil),
					stringFlag("out", "", "`PATH` to write the files to (default: --dir)", nil),
					intFlag("days", 365, 1, 100*365, "the certificate is valid for `N` days"),
				},
				Action: func(c *cli.Context) error {
					roles, _ := parseRoles(c.String("role")) // checked by the flag
					out := c.String("out")
					if out == "" {
						out = c.String("dir")
					}
					var hosts []string
					for _, h := range strings.Split(c.String("hosts"), ",") {
						if h = strings.TrimSpace(h); h != "" {
							hosts = append(hosts, h)
						}
					}
					now := time.Now()
					path, err := tlsauth.Issue(c.String("dir"), out, tlsauth.Request{
						Name: c.String("name"), Roles: roles, Hosts: hosts,
						NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(0, 0, c.Int("days")),
					})
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "certificate %s (key %s-key.pem, 0600)\n", path, strings.TrimSuffix(path, ".pem"))
					return nil
				},
			},
		},
	}
}

func parseRoles(s string) ([]tlsauth.Role, error) {
	var roles []tlsauth.Role
	for _, r := range strings.Split(s, ",") {
		role, err := tlsauth.ParseRole(strings.TrimSpace(r))
		if err != nil {
			return nil, err
		}
		roles = append(roles, role)
	}
	return roles, nil
}

func checkRoles(s string) error {
	_, err := parseRoles(s)
	return err
}
