//go:build !linux

package datastore

import "os"

// fdatasync makes f's written data durable. Off Linux there is no
// fdatasync; os.File.Sync is fsync, and on macOS F_FULLFSYNC, the only call
// there that flushes the drive's write cache.
func fdatasync(f *os.File) error { return f.Sync() }

// unmapPages does nothing off Linux: the pages a read mapped stay counted
// in the process's resident size until the kernel reclaims them.
func unmapPages(addr uintptr, n int64) error { return nil }
