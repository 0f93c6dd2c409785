package sysproc

import (
	"os"
	"strings"
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

// DieWithParent returns the attributes that make a child process get
// SIGKILL when its parent dies, even if the parent crashes before it could
// stop the child.
func DieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
