package datastore

import (
	"os"
	"syscall"
)

// fdatasync makes f's written data durable, without flushing metadata a
// read does not need (the modification time).
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// unmapPages takes n bytes of a shared, read-only file mapping at addr out
// of the process's page tables (madvise MADV_DONTNEED). The pages stay in
// the kernel's page cache, and the next read maps them again (a minor
// fault); the mapping must stay in place for the whole call.
func unmapPages(addr uintptr, n int64) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, addr, uintptr(n), syscall.MADV_DONTNEED); errno != 0 {
		return errno
	}
	return nil
}
