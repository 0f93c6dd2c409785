package zklocal

import "syscall"

// childAttr makes the server never outlive us, even if we crash before
// Stop.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
