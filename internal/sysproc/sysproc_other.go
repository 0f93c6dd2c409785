//go:build !linux

package sysproc

import "os/exec"

// BootID names the running kernel's boot where the system says; here it
// does not, so "".
func BootID() string { return "" }

// StartChild starts cmd. Only Linux makes a child get SIGKILL when its
// parent dies (Pdeathsig); elsewhere a child outlives a parent that crashes
// before stopping it.
func StartChild(cmd *exec.Cmd) error { return cmd.Start() }

// lowerThreadPriority does nothing off Linux: there setpriority acts on the
// whole process, not on the calling thread.
func lowerThreadPriority(int) {}
