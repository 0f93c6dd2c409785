package zklocal

import (
	"bytes"
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
	"strings"
	"sync"
	"time"

	"github.com/thunderyurts/thunderyurts/internal/sysproc"
)

// Where the Debian package installs ZooKeeper. Its jar names its
// dependencies in its manifest, but no logging backend: slf4j-simple, when
// installed, makes the server write its log to zookeeper.log.
const (
	jarPath    = "/usr/share/java/zookeeper.jar"
	confDir    = "/etc/zookeeper/conf"
	slf4jImpl  = "/usr/share/java/slf4j-simple.jar"
	mainName   = "org.apache.zookeeper.server.ZooKeeperServerMain"
	installEnv = "ZOOKEEPER_HOME"
)

// ErrNotInstalled: ZooKeeper (its jar) or java is missing from this machine.
var ErrNotInstalled = errors.New("zookeeper is not installed")

// Options configure Start. The zero value is usable.
type Options struct {
	// Install is the ZooKeeper to run: the directory of a release (with
	// lib/ and conf/), or the server jar (a jar in a lib/ directory brings
	// the jars beside it). "" means $ZOOKEEPER_HOME, else the Debian
	// package.
	Install string
	// Dir holds the server's data (Dir/data), zoo.cfg and zookeeper.log (the
	// server's output). Reusing a Dir keeps the data. "" means a temporary
	// directory that Stop removes.
	Dir string
	// Port is the loopback client port; 0 picks a free one.
	Port int
	// TickTime is ZooKeeper's time unit: sessions expire on tick boundaries.
	// 0 means 200ms. Session timeouts from 1 s to 60 s are allowed whatever
	// the tick.
	TickTime time.Duration
	// Host is the address ZooKeeper binds; "" means 127.0.0.1. Tests that
	// put nodes in network namespaces of their own bind it to their bridge
	// address.
	Host string
	// Logger receives start and stop events; nil means slog.Default().
	Logger *slog.Logger
}

// Server is a running ZooKeeper process. The zero value is not usable; call
// Start.
type Server struct {
	cmd    *exec.Cmd
	addr   string
	dir    string
	ownDir bool // Dir was ours to create, and is ours to remove
	log    *slog.Logger
	out    *os.File
	exited chan struct{} // closed when the process has been waited for

	stopOnce sync.Once
	stopErr  error
}

// Start launches ZooKeeper and returns once it answers "ruok" with "imok"
// and serves sessions.
// It gives up when ctx ends (killing the process) and reports the last lines
// of zookeeper.log when the server exits early. ErrNotInstalled when the jar
// or java is missing. With Port 0, a port taken between choosing it and the
// server binding it is retried with another.
func Start(ctx context.Context, opts Options) (*Server, error) {
	classpath, err := findClasspath(opts.Install)
	if err != nil {
		return nil, err
	}
	java, err := findJava()
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	tick := opts.TickTime
	if tick <= 0 {
		tick = 200 * time.Millisecond
	}
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	dir, ownDir := opts.Dir, opts.Dir == ""
	if ownDir {
		if dir, err = os.MkdirTemp("", "zklocal-"); err != nil {
			return nil, fmt.Errorf("zookeeper directory: %w", err)
		}
	}
	for attempt := 1; ; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(host); err != nil {
				break
			}
		}
		var s *Server
		s, err = launch(ctx, java, classpath, dir, host, port, tick, log)
		if err == nil {
			s.ownDir = ownDir
			return s, nil
		}
		if opts.Port != 0 || attempt == 3 || ctx.Err() != nil {
			break
		}
		log.Debug("zookeeper did not start, retrying on another port", "port", port, "err", err)
	}
	if ownDir {
		os.RemoveAll(dir)
	}
	return nil, err
}

// findClasspath is the java class path of the ZooKeeper server at install
// (Options.Install).
func findClasspath(install string) (string, error) {
	if install == "" {
		install = os.Getenv(installEnv)
	}
	if install == "" {
		if _, err := os.Stat(jarPath); err != nil {
			return "", fmt.Errorf("%w (run `make deps`, or set %s): %s not found", ErrNotInstalled, installEnv, jarPath)
		}
		cp := []string{confDir, jarPath}
		if _, err := os.Stat(slf4jImpl); err == nil {
			cp = append(cp, slf4jImpl)
		}
		return strings.Join(cp, ":"), nil
	}
	fi, err := os.Stat(install)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	if !fi.IsDir() {
		if filepath.Base(filepath.Dir(install)) == "lib" {
			return install + ":" + filepath.Join(filepath.Dir(install), "*"), nil
		}
		return install, nil
	}
	// A release: the server jar in lib/ (3.5 and later) or at the top
	// (3.4), its logging configuration in conf/.
	jars, _ := filepath.Glob(filepath.Join(install, "lib", "zookeeper-*.jar"))
	top, _ := filepath.Glob(filepath.Join(install, "zookeeper-*.jar"))
	if len(jars)+len(top) == 0 {
		return "", fmt.Errorf("%w: no zookeeper-*.jar in %s or %s", ErrNotInstalled, install, filepath.Join(install, "lib"))
	}
	return strings.Join([]string{filepath.Join(install, "conf"), filepath.Join(install, "*"), filepath.Join(install, "lib", "*")}, ":"), nil
}

func findJava() (string, error) {
	if java, err := exec.LookPath("java"); err == nil {
		return java, nil
	}
	if _, err := os.Stat("/usr/bin/java"); err == nil {
		return "/usr/bin/java", nil
	}
	return "", fmt.Errorf("%w (run `make deps`): java not found on PATH or at /usr/bin/java", ErrNotInstalled)
}

// freePort asks the kernel for a free port on host.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("pick a zookeeper port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func launch(ctx context.Context, java, classpath, dir, host string, port int, tick time.Duration, log *slog.Logger) (*Server, error) {
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("zookeeper data directory: %w", err)
	}
	cfg := filepath.Join(dir, "zoo.cfg")
	conf := fmt.Sprintf(`# Written by zklocal: a single loopback ZooKeeper.
tickTime=%d
dataDir=%s
clientPort=%d
clientPortAddress=%s
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
minSessionTimeout=1000
maxSessionTimeout=60000
# Tests and dev clusters open many connections from one address.
maxClientCnxns=0
`, tick.Milliseconds(), dataDir, port, host)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("zookeeper config: %w", err)
	}
	out, err := os.OpenFile(filepath.Join(dir, "zookeeper.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("zookeeper log: %w", err)
	}
	// The server logs to its standard output, which goes to zookeeper.log
	// (a release's own logging configuration honours these properties).
	cmd := exec.Command(java, "-cp", classpath, "-Dzookeeper.log.dir="+dir, "-Dzookeeper.root.logger=INFO,CONSOLE",
		"-Dorg.slf4j.simpleLogger.showDateTime=true", "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ",
		mainName, cfg)
	cmd.Stdout, cmd.Stderr = out, out
	// Never outlive us, even if we crash before Stop.
	if err := sysproc.StartChild(cmd); err != nil {
		out.Close()
		return nil, fmt.Errorf("start zookeeper: %w", err)
	}
	s := &Server{
		cmd:    cmd,
		addr:   net.JoinHostPort(host, strconv.Itoa(port)),
		dir:    dir,
		log:    log,
		out:    out,
		exited: make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait() // the exit is reported through exited; Stop kills on purpose
		close(s.exited)
	}()
	start := time.Now()
	if err := s.waitReady(ctx); err != nil {
		s.kill()
		return nil, fmt.Errorf("zookeeper on %s did not start: %w%s", s.addr, err, s.logTail())
	}
	log.Info("zookeeper started", "addr", s.addr, "pid", cmd.Process.Pid, "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	return s, nil
}

// waitReady polls until the server answers "ruok" with "imok" and "srvr"
// shows it serving: it says imok while it still loads its database and
// turns sessions away.
func (s *Server) waitReady(ctx context.Context) error {
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		if Ruok(ctx, s.addr) {
			if stat, err := fourLetter(ctx, s.addr, "srvr"); err == nil && strings.Contains(stat, "Mode: ") {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.exited:
			return fmt.Errorf("the process exited (%v)", s.cmd.ProcessState)
		case <-tick.C:
		}
	}
}

// Ruok reports whether the ZooKeeper at addr answers the "ruok" command with
// "imok" within a second (and before ctx ends).
func Ruok(ctx context.Context, addr string) bool {
	reply, err := fourLetter(ctx, addr, "ruok")
	return err == nil && reply == "imok"
}

// fourLetter sends a four-letter admin command and returns the answer.
func fourLetter(ctx context.Context, addr, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	if err := c.SetDeadline(deadline); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte(cmd)); err != nil {
		return "", err
	}
	reply, err := io.ReadAll(io.LimitReader(c, 64<<10))
	return string(reply), err
}

// logTail returns the end of zookeeper.log for an error message.
func (s *Server) logTail() string {
	data, err := os.ReadFile(filepath.Join(s.dir, "zookeeper.log"))
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return ""
	}
	const limit = 2000
	if len(data) > limit {
		data = data[len(data)-limit:]
	}
	return "; zookeeper.log ends with:\n" + string(bytes.TrimSpace(data))
}

// kill ends the process and waits for it.
func (s *Server) kill() {
	_ = s.cmd.Process.Kill() // fails only if it already exited
	<-s.exited
	s.out.Close()
}

// Addr is the client address, "HOST:PORT".
func (s *Server) Addr() string { return s.addr }

// Dir is the server's directory.
func (s *Server) Dir() string { return s.dir }

// Done is closed when the process has exited.
func (s *Server) Done() <-chan struct{} { return s.exited }

// Pid is the java process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Stop kills the server (SIGKILL: ZooKeeper syncs its log on every write, so
// nothing acknowledged is lost) and waits for it to exit; then it removes a
// directory Start created itself. Stop is idempotent.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.kill()
		if s.ownDir {
			s.stopErr = os.RemoveAll(s.dir)
		}
		s.log.Info("zookeeper stopped", "addr", s.addr)
	})
	return s.stopErr
}
