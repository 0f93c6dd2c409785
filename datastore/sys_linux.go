package datastore

import (
	"os"
	"syscall"
)

// fdatasync makes f's written data durable, without flushing metadata a
// read does not need (the modification time).
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
