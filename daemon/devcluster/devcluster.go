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
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
	"github.com/thunderyurts/thunderyurts/coord/zklocal"
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
	// Logger receives the cluster's events; nil → slog.Default().
	Logger *slog.Logger
}

// Process is one daemon of the cluster.
type Process struct {
	Name string // e.g. "coord-1", "data-g1-2"
	Role string // "coordinator" or "data"
	Addr string
	HTTP string
	Dir  string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Cluster is a running dev cluster.
type Cluster struct {
	cfg       Config
	zk        *zklocal.Server
	Processes []*Process
}

// ZK is the ZooKeeper connect string of the cluster.
func (c *Cluster) ZK() string { return c.zk.Addr() }

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
		p := &Process{Name: fmt.Sprintf("coord-%d", i), Role: "coordinator"}
		if err := c.spawn(p, "serve", "coord", "--slots", strconv.Itoa(c.cfg.Slots), "--assign-delay", "1s",
			"--replication-factor", strconv.Itoa(c.cfg.Replicas)); err != nil {
			return err
		}
	}
	for g := 1; g <= c.cfg.Groups; g++ {
		for r := 1; r <= c.cfg.Replicas; r++ {
			p := &Process{Name: fmt.Sprintf("data-g%d-%d", g, r), Role: "data"}
			p.Dir = filepath.Join(c.cfg.Dir, p.Name)
			args := append([]string{"serve", "data", "--group", fmt.Sprintf("g%d", g), "--dir", p.Dir}, c.cfg.DataArgs...)
			if err := c.spawn(p, args...); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Cluster) spawn(p *Process, args ...string) error {
	var err error
	if p.Addr, err = freeAddr(); err != nil {
		return err
	}
	if p.HTTP, err = freeAddr(); err != nil {
		return err
	}
	p.Log = filepath.Join(c.cfg.Dir, "logs", p.Name+".log")
	logFile, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s log: %w", p.Name, err)
	}
	defer logFile.Close()
	args = append(args, "--listen", p.Addr, "--http", p.HTTP, "--zk", c.zk.Addr(), "--cluster", c.cfg.Cluster)
	p.cmd = exec.Command(c.cfg.Binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.done = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	c.Processes = append(c.Processes, p)
	return nil
}

// freeAddr picks a loopback port nothing listens on right now.
func freeAddr() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a free port: %w", err)
	}
	defer lis.Close()
	return lis.Addr().String(), nil
}

// waitServing waits until every slot has an owner whose primary is
// registered, reporting a daemon that died meanwhile.
func (c *Cluster) waitServing(ctx context.Context) error {
	conn, err := zkcoord.Dial(ctx, c.zk.Addr(), zkcoord.Options{Logger: c.cfg.Logger})
	if err != nil {
		return err
	}
	defer conn.Close()
	cl := coord.NewCluster(conn, c.cfg.Cluster)
	for {
		for _, p := range c.Processes {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited during start-up (%v); see %s", p.Name, p.cmd.ProcessState, p.Log)
			default:
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
	for _, p := range c.Processes {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	var errs []error
	for _, p := range c.Processes {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			errs = append(errs, fmt.Errorf("%s did not stop within 10s; killed", p.Name))
		}
	}
	if err := c.zk.Stop(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Describe writes how to reach the cluster.
func (c *Cluster) Describe(w io.Writer) {
	fmt.Fprintf(w, "ThunderYurts dev cluster %q is serving (data and logs in %s)\n", c.cfg.Cluster, c.cfg.Dir)
	fmt.Fprintf(w, "  %-14s %-21s\n", "zookeeper", c.zk.Addr())
	for _, p := range c.Processes {
		fmt.Fprintf(w, "  %-14s %-21s http %s\n", p.Name, p.Addr, p.HTTP)
	}
	fmt.Fprintf(w, "\nUse it from another shell:\n  export THUNDER_ZK=%s THUNDER_CLUSTER=%s\n  thunderctl put hello world && thunderctl get hello\n\nPress Ctrl-C to stop.\n", c.zk.Addr(), c.cfg.Cluster)
}
