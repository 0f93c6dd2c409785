package sysproc

import "syscall"

// DieWithParent returns the attributes that make a child process get
// SIGKILL when its parent dies, even if the parent crashes before it could
// stop the child.
func DieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
