// Package devcluster runs a whole ThunderYurts cluster on loopback for
// development and demos (`thunderctl dev`): a ZooKeeper from the local
// install, coordinators and data nodes, each daemon a child process of the
// given binary, with logs and data under one directory. Rerunning it on the
// same directory brings the same cluster back with its data.
package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
	"github.com/thunderyurts/thunderyurts/coord/zklocal"
	"github.com/thunderyurts/thunderyurts/daemon/procs"
)

// Config describes the cluster to run.
type Config struct {
	// Binary is the thunderctl executable the daemons run as.
	Binary string
	// Dir holds ZooKeeper's data, each daemon's data and the logs.
	Dir string
	// Cluster is the cluster name; "" → "default".
	Cluster string
	// Groups, Replicas and Coords count groups, nodes per group and
	// coordinators; each 0 → 1.
	Groups, Replicas, Coords int
	// Slots is the slot count of a new cluster; 0 → 1024.
	Slots int
	// DataArgs are extra flags for every `serve data`.
	DataArgs []string
	// ZKAuth, when set, are the ZooKeeper credentials of every daemon, and
	// ZKACL (ACLCreator or ACLRead) the ACL they create znodes with. The
	// daemons read them from the file ZKAuthFile names, not from their
	// command line, which ps shows.
	ZKAuth zkcoord.Auth
	ZKACL  coord.ACLMode
	// Args are extra flags for every daemon (e.g. the --tls-* files).
	Args []string
	// ClientEnv are extra NAME=VALUE settings clients need, added to the
	// export line (e.g. THUNDER_TLS_CERT).
	ClientEnv []string
	// Logger receives the cluster's events; nil → slog.Default().
	Logger *slog.Logger
}

// Process is one daemon of the cluster; its Name is e.g. "coord-1" or
// "data-g1-2".
type Process struct {
	*procs.Proc
	Role string // "coordinator" or "data"
	Addr string
	HTTP string
	Dir  string
}

// Cluster is a running dev cluster.
type Cluster struct {
	cfg       Config
	zk        *zklocal.Server
	Processes []*Process
}

// ZK is the ZooKeeper connect string of the cluster.
func (c *Cluster) ZK() string { return c.zk.Addr() }

// ZKAuthFile is the file under dir holding the cluster's ZooKeeper
// credentials, for --zk-auth @FILE.
func ZKAuthFile(dir string) string { return filepath.Join(dir, "zk-auth") }

// zkFlags are the flags that give a command the cluster's ZooKeeper and
// credentials.
func (c *Cluster) zkFlags() []string {
	flags := []string{"--zk", c.zk.Addr(), "--cluster", c.cfg.Cluster}
	if !c.cfg.ZKAuth.IsZero() {
		flags = append(flags, "--zk-auth", "@"+ZKAuthFile(c.cfg.Dir), "--zk-acl", c.cfg.ZKACL.String())
	}
	return flags
}

// Start brings the cluster up and returns once every slot is served by a
// primary, or fails (and cleans up) when that does not happen within ctx.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Cluster == "" {
		cfg.Cluster = "default"
	}
	cfg.Groups, cfg.Replicas, cfg.Coords = max(cfg.Groups, 1), max(cfg.Replicas, 1), max(cfg.Coords, 1)
	if cfg.Slots <= 0 {
		cfg.Slots = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("dev dir: %w", err)
	}
	if !cfg.ZKAuth.IsZero() {
		line := "digest:" + cfg.ZKAuth.User + ":" + cfg.ZKAuth.Password + "\n"
		if err := os.WriteFile(ZKAuthFile(cfg.Dir), []byte(line), 0o600); err != nil {
			return nil, fmt.Errorf("dev dir: %w", err)
		}
	}
	zk, err := zklocal.Start(ctx, zklocal.Options{Dir: filepath.Join(cfg.Dir, "zookeeper"), Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, zk: zk}
	if err := c.startDaemons(); err != nil {
		c.Stop()
		return nil, err
	}
	if err := c.waitServing(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) startDaemons() error {
	for i := 1; i <= c.cfg.Coords; i++ {
		if err := c.spawn(fmt.Sprintf("coord-%d", i), "coordinator", "", "serve", "coord", "--slots", strconv.Itoa(c.cfg.Slots),
			"--assign-delay", "1s", "--replication-factor", strconv.Itoa(c.cfg.Replicas)); err != nil {
			return err
		}
	}
	for g := 1; g <= c.cfg.Groups; g++ {
		for r := 1; r <= c.cfg.Replicas; r++ {
			name := fmt.Sprintf("data-g%d-%d", g, r)
			dir := filepath.Join(c.cfg.Dir, name)
			args := append([]string{"serve", "data", "--group", fmt.Sprintf("g%d", g), "--dir", dir}, c.cfg.DataArgs...)
			if err := c.spawn(name, "data", dir, args...); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Cluster) spawn(name, role, dir string, args ...string) error {
	p := &Process{Role: role, Dir: dir}
	var err error
	if p.Addr, err = procs.FreeAddr(); err != nil {
		return err
	}
	if p.HTTP, err = procs.FreeAddr(); err != nil {
		return err
	}
	args = append(append(args, "--listen", p.Addr, "--http", p.HTTP), c.zkFlags()...)
	args = append(args, c.cfg.Args...)
	if p.Proc, err = procs.Start(name, c.cfg.Binary, args, filepath.Join(c.cfg.Dir, "logs", name+".log")); err != nil {
		return err
	}
	c.Processes = append(c.Processes, p)
	return nil
}

// waitServing waits until every slot has an owner whose primary is
// registered, reporting a daemon that died meanwhile.
func (c *Cluster) waitServing(ctx context.Context) error {
	conn, err := zkcoord.Dial(ctx, c.zk.Addr(), zkcoord.Options{Logger: c.cfg.Logger, Auth: c.cfg.ZKAuth, ACL: c.cfg.ZKACL})
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := coord.NewCluster(conn, c.cfg.Cluster)
	for {
		for _, p := range c.Processes {
			if state := p.ExitState(); state != "" {
				return fmt.Errorf("%s exited during start-up (%s); see %s", p.Name, state, p.Log)
			}
		}
		if rt, err := cl.Routes(ctx); err == nil && rt.Serving() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not serving yet: %w (logs in %s)", ctx.Err(), filepath.Join(c.cfg.Dir, "logs"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops the daemons with SIGTERM (SIGKILL after 10 s), then ZooKeeper.
func (c *Cluster) Stop() error {
	ps := make([]*procs.Proc, len(c.Processes))
	for i, p := range c.Processes {
		ps[i] = p.Proc
	}
	err := procs.StopAll(ps, 10*time.Second)
	return errors.Join(err, c.zk.Stop())
}

// Describe writes how to reach the cluster.
func (c *Cluster) Describe(w io.Writer) {
	fmt.Fprintf(w, "ThunderYurts dev cluster %q is serving (data and logs in %s)\n", c.cfg.Cluster, c.cfg.Dir)
	fmt.Fprintf(w, "  %-14s %-21s\n", "zookeeper", c.zk.Addr())
	for _, p := range c.Processes {
		fmt.Fprintf(w, "  %-14s %-21s http %s\n", p.Name, p.Addr, p.HTTP)
	}
	fmt.Fprintf(w, "\nUse it from another shell:\n  %s\n  thunderctl put hello world && thunderctl get hello\n\nPress Ctrl-C to stop.\n", c.ExportLine())
}

// ExportLine is the shell line that points thunderctl at the cluster.
func (c *Cluster) ExportLine() string {
	parts := []string{"export", "THUNDER_ZK=" + c.zk.Addr(), "THUNDER_CLUSTER=" + c.cfg.Cluster}
	if !c.cfg.ZKAuth.IsZero() {
		parts = append(parts, "THUNDER_ZK_AUTH=@"+ZKAuthFile(c.cfg.Dir))
	}
	return strings.Join(append(parts, c.cfg.ClientEnv...), " ")
}
