package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
	"github.com/thunderyurts/thunderyurts/daemon/devcluster"
	"github.com/thunderyurts/thunderyurts/wire/tlsauth"
)

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run a whole local cluster on loopback (ZooKeeper, coordinators, data nodes) until Ctrl-C",
		Flags: []cli.Flag{
			stringFlag("dir", ".dev", "`PATH` for ZooKeeper, data and logs (rerun on it to get the same cluster back)", nonEmpty),
			intFlag("groups", 2, 1, maxReplicas, "replica groups"),
			intFlag("replicas", 2, 1, maxReplicas, "data nodes per group"),
			intFlag("coords", 2, 1, maxReplicas, "coordinators"),
			intFlag("slots", 1024, 1, maxSlots, "slot count of a new cluster"),
			stringFlag("acks", "all", "write acknowledgement of the data nodes: all or 1", checkAcks),
			stringFlag("ready-file", "", "write the `FILE` with the export line once the cluster serves (for scripts)", nil),
			boolFlag("secure", "mutual TLS everywhere: make a throwaway CA and certificates in --dir/tls and print the client settings"),
		},
		Action: runDev,
	}
}

func runDev(c *cli.Context) error {
	log := newLogger(c, slog.LevelInfo)
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	dir, err := filepath.Abs(c.String("dir"))
	if err != nil {
		return err
	}
	auth, acl, err := zkOptions(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cfg := devcluster.Config{
		Binary: self, Dir: dir, Cluster: c.String("cluster"),
		Groups: c.Int("groups"), Replicas: c.Int("replicas"), Coords: c.Int("coords"), Slots: c.Int("slots"), Logger: log,
		DataArgs: []string{"--acks", c.String("acks")}, ZKAuth: auth, ZKACL: acl,
	}
	if c.Bool("secure") {
		if err := secureDev(&cfg); err != nil {
			return err
		}
	}
	cl, err := devcluster.Start(sctx, cfg)
	if err != nil {
		return err
	}
	cl.Describe(c.App.Writer)
	if f := c.String("ready-file"); f != "" {
		if err := os.WriteFile(f, []byte(cl.ExportLine()+"\n"), 0o644); err != nil {
			_ = cl.Stop()
			return fmt.Errorf("ready file: %w", err)
		}
	}
	<-ctx.Done()
	fmt.Fprintln(c.App.Writer, "stopping the dev cluster…")
	return cl.Stop()
}

// secureDev makes a CA in the dev directory (kept across reruns) and
// certificates for the daemons (node), for the operator (admin, which the
// printed settings use) and for an application (client), and turns mutual
// TLS on for every daemon.
func secureDev(cfg *devcluster.Config) error {
	dir := filepath.Join(cfg.Dir, "tls")
	if _, err := os.Stat(filepath.Join(dir, tlsauth.CACertFile)); os.IsNotExist(err) {
		if err := tlsauth.InitCA(dir, 365, time.Now()); err != nil {
			return fmt.Errorf("dev CA: %w", err)
		}
	}
	now := time.Now()
	files := map[tlsauth.Role]tlsauth.Files{}
	for _, role := range tlsauth.Roles {
		cert, err := tlsauth.Issue(dir, dir, tlsauth.Request{
			Name: string(role), Roles: []tlsauth.Role{role}, Hosts: []string{"127.0.0.1", "localhost"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(0, 0, 30),
		})
		if err != nil {
			return fmt.Errorf("dev %s certificate: %w", role, err)
		}
		files[role] = tlsauth.Files{Cert: cert, Key: filepath.Join(dir, string(role)+"-key.pem"), CA: filepath.Join(dir, tlsauth.CACertFile)}
	}
	node, admin := files[tlsauth.RoleNode], files[tlsauth.RoleAdmin]
	cfg.Args = append(cfg.Args, "--tls-cert", node.Cert, "--tls-key", node.Key, "--tls-ca", node.CA)
	cfg.ClientEnv = append(cfg.ClientEnv, "THUNDER_TLS_CERT="+admin.Cert, "THUNDER_TLS_KEY="+admin.Key, "THUNDER_TLS_CA="+admin.CA)
	// ZooKeeper ACLs too, with a password of its own unless --zk-auth gave
	// one: devcluster hands it to the daemons and the export line as a file.
	if cfg.ZKAuth.IsZero() {
		auth, err := devZKAuth(cfg.Dir)
		if err != nil {
			return err
		}
		cfg.ZKAuth, cfg.ZKACL = auth, coord.ACLCreator
	}
	return nil
}

// devZKAuth is the ZooKeeper password of a secure dev directory: the one an
// earlier run kept there (its znodes carry it), or a new random one.
func devZKAuth(dir string) (zkcoord.Auth, error) {
	if _, err := os.Stat(devcluster.ZKAuthFile(dir)); err == nil {
		return readZKAuth("@" + devcluster.ZKAuthFile(dir))
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return zkcoord.Auth{}, fmt.Errorf("dev ZooKeeper password: %w", err)
	}
	return zkcoord.Auth{User: "dev", Password: hex.EncodeToString(b)}, nil
}
