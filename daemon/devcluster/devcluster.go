// Package devcluster runs a whole ThunderYurts cluster on loopback for
// development and demos (`thunderctl dev`): a ZooKeeper from the local
// install, coordinators and data nodes, each daemon a child process of the
// given binary, with logs and data under one directory. Rerunning it on the
// same directory brings the same cluster back with its data; with a base
// port, on the same addresses too. A child that dies is reported and, if
// the config says so, started again.
package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
	// BasePort fixes the ports: ZooKeeper listens on it, and each daemon,
	// in the order Processes lists them, on the next two (its address,
	// then its http address). 0 picks free ports.
	BasePort int
	// ZooKeeper is the ZooKeeper install to run (zklocal.Options.Install).
	ZooKeeper string
	// Restart starts a child that exits again, after a pause that grows
	// while it keeps dying at once; otherwise it is only reported.
	Restart bool
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
	Processes []*Process

	mu sync.Mutex
	zk *zklocal.Server // replaced when it is restarted

	stopWatch context.CancelFunc // stops the watchers; nil until they run
	watchers  sync.WaitGroup
}

// ZK is the ZooKeeper connect string of the cluster.
func (c *Cluster) ZK() string { return c.zookeeper().Addr() }

func (c *Cluster) zookeeper() *zklocal.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.zk
}

// ZKAuthFile is the file under dir holding the cluster's ZooKeeper
// credentials, for --zk-auth @FILE.
func ZKAuthFile(dir string) string { return filepath.Join(dir, "zk-auth") }

// zkFlags are the flags that give a command the cluster's ZooKeeper and
// credentials.
func (c *Cluster) zkFlags() []string {
	flags := []string{"--zk", c.ZK(), "--cluster", c.cfg.Cluster}
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
	zk, err := zklocal.Start(ctx, zkOptions(cfg, cfg.BasePort))
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
	c.watch()
	return c, nil
}

func zkOptions(cfg Config, port int) zklocal.Options {
	return zklocal.Options{Dir: filepath.Join(cfg.Dir, "zookeeper"), Port: port, Install: cfg.ZooKeeper, Logger: cfg.Logger}
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
	if p.Addr, err = c.addr(2*len(c.Processes) + 1); err != nil {
		return err
	}
	if p.HTTP, err = c.addr(2*len(c.Processes) + 2); err != nil {
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

// addr is the loopback address BasePort+offset, or a free one without a
// base port.
func (c *Cluster) addr(offset int) (string, error) {
	if c.cfg.BasePort == 0 {
		return procs.FreeAddr()
	}
	port := c.cfg.BasePort + offset
	if port > 65535 {
		return "", fmt.Errorf("base port %d: the cluster needs ports up to %d", c.cfg.BasePort, port)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("base port %d: port %d is taken: %w", c.cfg.BasePort, port, err)
	}
	l.Close()
	return addr, nil
}

// waitServing waits until every slot has an owner whose primary is
// registered, reporting a daemon that died meanwhile.
func (c *Cluster) waitServing(ctx context.Context) error {
	conn, err := zkcoord.Dial(ctx, c.ZK(), zkcoord.Options{Logger: c.cfg.Logger, Auth: c.cfg.ZKAuth, ACL: c.cfg.ZKACL})
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

// watch starts a watcher for every child, ZooKeeper included, which Stop
// ends.
func (c *Cluster) watch() {
	ctx, cancel := context.WithCancel(context.Background())
	c.stopWatch = cancel
	for _, p := range c.Processes {
		c.watchers.Add(1)
		go c.watchChild(ctx, p.Name, p.Log, p.Done, p.ExitState, p.Restart)
	}
	c.watchers.Add(1)
	zk := c.zookeeper()
	_, port, _ := net.SplitHostPort(zk.Addr())
	zkPort, _ := strconv.Atoi(port)
	go c.watchChild(ctx, "zookeeper", filepath.Join(zk.Dir(), "zookeeper.log"),
		func() <-chan struct{} { return c.zookeeper().Done() },
		func() string { return "exited" },
		func() error {
			_ = c.zookeeper().Stop() // releases what the dead one held
			sctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			zk, err := zklocal.Start(sctx, zkOptions(c.cfg, zkPort)) // on the port the daemons know
			if err == nil {
				c.mu.Lock()
				c.zk = zk
				c.mu.Unlock()
			}
			return err
		})
}

// Pauses before a child is restarted: the first is short, and each quick
// death doubles it, so a child that cannot start does not spin.
const (
	firstPause = time.Second
	maxPause   = 30 * time.Second
	stableRun  = time.Minute // a run this long resets the pause
)

// watchChild reports each exit of a child until ctx ends, and restarts it
// if the cluster is configured to.
func (c *Cluster) watchChild(ctx context.Context, name, logPath string, done func() <-chan struct{}, state func() string, restart func() error) {
	defer c.watchers.Done()
	log := c.cfg.Logger
	pause := firstPause
	for {
		started := time.Now()
		select {
		case <-ctx.Done():
			return
		case <-done():
		}
		if ctx.Err() != nil {
			return // stopping: the exit is Stop's
		}
		if !c.cfg.Restart {
			log.Error("dev cluster: a process exited; not restarting it", "process", name, "state", state(), "log", logPath)
			return
		}
		if time.Since(started) >= stableRun {
			pause = firstPause
		}
		log.Error("dev cluster: a process exited; restarting it", "process", name, "state", state(), "in", pause, "log", logPath)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, maxPause)
			err := restart()
			if err == nil {
				log.Info("dev cluster: process restarted", "process", name)
				break
			}
			log.Error("dev cluster: restart failed; trying again", "process", name, "err", err, "in", pause)
		}
	}
}

// Stop stops the watchers, then the daemons with SIGTERM (SIGKILL after
// 10 s), then ZooKeeper.
func (c *Cluster) Stop() error {
	if c.stopWatch != nil {
		c.stopWatch()
		c.watchers.Wait()
	}
	ps := make([]*procs.Proc, len(c.Processes))
	for i, p := range c.Processes {
		ps[i] = p.Proc
	}
	err := procs.StopAll(ps, 10*time.Second)
	return errors.Join(err, c.zookeeper().Stop())
}

// Describe writes how to reach the cluster.
func (c *Cluster) Describe(w io.Writer) {
	fmt.Fprintf(w, "ThunderYurts dev cluster %q is serving (data and logs in %s)\n", c.cfg.Cluster, c.cfg.Dir)
	fmt.Fprintf(w, "  %-14s %-21s\n", "zookeeper", c.ZK())
	for _, p := range c.Processes {
		fmt.Fprintf(w, "  %-14s %-21s http %s\n", p.Name, p.Addr, p.HTTP)
	}
	fmt.Fprintf(w, "\nUse it from another shell:\n  %s\n  thunderctl put hello world && thunderctl get hello\n\nPress Ctrl-C to stop.\n", c.ExportLine())
}

// ExportLine is the shell line that points thunderctl at the cluster.
func (c *Cluster) ExportLine() string {
	parts := []string{"export", "THUNDER_ZK=" + c.ZK(), "THUNDER_CLUSTER=" + c.cfg.Cluster}
	if !c.cfg.ZKAuth.IsZero() {
		parts = append(parts, "THUNDER_ZK_AUTH=@"+ZKAuthFile(c.cfg.Dir))
	}
	return strings.Join(append(parts, c.cfg.ClientEnv...), " ")
}
