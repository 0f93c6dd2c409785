//go:build !linux

package zklocal

import "syscall"

// childAttr: without Linux's parent-death signal, a server whose parent
// crashed before Stop keeps running until it is killed.
func childAttr() *syscall.SysProcAttr { return nil }
