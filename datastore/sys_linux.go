package datastore

import (
	"os"
	"syscall"
)

// fdatasync makes f's written data durable, without flushing metadata a
// read does not need (the modification time).
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// lowerThreadPriority sets the nice value of the calling OS thread (Linux
// schedules threads, not processes, by nice value); best effort.
func lowerThreadPriority(nice int) {
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice)
}
