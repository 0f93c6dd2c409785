//go:build !linux

package sysproc

import "syscall"

// DieWithParent returns the attributes that make a child process get
// SIGKILL when its parent dies. Only Linux offers that (Pdeathsig); elsewhere
// a child outlives a parent that crashes before stopping it.
func DieWithParent() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
