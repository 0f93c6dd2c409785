package sysproc

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
)

// BootID names the running kernel's boot; "" when it cannot be read.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// StartChild starts cmd so that it gets SIGKILL when this process dies,
// even if it crashes before it could stop cmd (Pdeathsig). Linux sends that
// signal when the thread that started the child ends, not the process
// (go.dev/issue/27505), and Go ends threads: every one that ran Background
// work, whatever it ran before. So every child is started from one thread
// that lives as long as the process.
func StartChild(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	launcherOnce.Do(func() {
		go func() { // never ends: its thread must live as long as the process
			runtime.LockOSThread()
			for start := range launches {
				start()
			}
		}()
	})
	done := make(chan error, 1)
	launches <- func() { done <- cmd.Start() }
	return <-done
}

var (
	launcherOnce sync.Once
	launches     = make(chan func())
)

// lowerThreadPriority sets the nice value of the calling OS thread (Linux
// schedules threads, not processes, by nice value); best effort.
func lowerThreadPriority(nice int) {
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice)
}
