//go:build !linux

package sysproc

import "syscall"

// BootID names the running kernel's boot where the system says; here it
// does not, so "".
func BootID() string { return "" }

// DieWithParent returns the attributes that make a child process get
// SIGKILL when its parent dies. Only Linux offers that (Pdeathsig); elsewhere
// a child outlives a parent that crashes before stopping it.
func DieWithParent() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
