// Package procs supervises daemons run as child processes: `thunderctl dev`
// (daemon/devcluster) and the end-to-end tests start, signal, kill and
// restart them through it. Each process appends its output to a log file
// of its own and dies with its parent (Pdeathsig).
package procs

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/thunderyurts/thunderyurts/internal/sysproc"
)

// Proc is one child process, started again by Restart with the same
// program and arguments.
type Proc struct {
	Name    string
	Program string
	Args    []string
	Log     string // file the process's stdout and stderr are appended to

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs program with args as the process name, its output appended to
// log.
func Start(name, program string, args []string, log string) (*Proc, error) {
	p := &Proc{Name: name, Program: program, Args: args, Log: log}
	if err := p.Restart(); err != nil {
		return nil, err
	}
	return p, nil
}

// Restart runs the process again after it exited.
func (p *Proc) Restart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("restart %s: still running", p.Name)
		}
	}
	logFile, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s log: %w", p.Name, err)
	}
	defer logFile.Close()
	cmd := exec.Command(p.Program, p.Args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Never outlive us, even if we crash before stopping it.
	if err := sysproc.StartChild(cmd); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

func (p *Proc) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// Done is closed when the current run of the process has exited.
func (p *Proc) Done() <-chan struct{} {
	_, done := p.current()
	return done
}

// ExitState describes how the current run ended; "" while it runs.
func (p *Proc) ExitState() string {
	cmd, done := p.current()
	select {
	case <-done:
		return cmd.ProcessState.String()
	default:
		return ""
	}
}

// Signal sends sig to the current run.
func (p *Proc) Signal(sig os.Signal) error {
	cmd, _ := p.current()
	return cmd.Process.Signal(sig)
}

// Kill stops the process at once, as a crash would, and waits for it.
func (p *Proc) Kill() {
	cmd, done := p.current()
	_ = cmd.Process.Kill()
	<-done
}

// Stop asks the process to stop (SIGTERM) and kills it if it has not
// within grace.
func (p *Proc) Stop(grace time.Duration) error {
	_ = p.Signal(syscall.SIGTERM)
	return p.Wait(grace)
}

// Wait waits up to grace for the process to exit, then kills it.
func (p *Proc) Wait(grace time.Duration) error {
	select {
	case <-p.Done():
		return nil
	case <-time.After(grace):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s; killed", p.Name, grace)
	}
}

// StopAll stops every process at once and waits for all of them.
func StopAll(ps []*Proc, grace time.Duration) error {
	for _, p := range ps {
		_ = p.Signal(syscall.SIGTERM)
	}
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.Wait(grace))
	}
	return errors.Join(errs...)
}

// FreeAddr picks a loopback port nothing listens on right now, below
// Linux's default ephemeral range (32768–60999): a port the kernel hands
// out for outgoing connections could be taken by one between the pick and
// the bind, or while a restarted daemon is down.
func FreeAddr() (string, error) {
	var err error
	for range 100 {
		var lis net.Listener
		port := 20000 + rand.IntN(32768-20000)
		if lis, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			addr := lis.Addr().String()
			lis.Close()
			return addr, nil
		}
	}
	return "", fmt.Errorf("pick a free port: %w", err)
}
