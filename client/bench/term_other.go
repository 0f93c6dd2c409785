//go:build !linux && !darwin

package bench

import "os"

// IsTerminal reports whether f is a terminal. Off Linux and macOS it always says no, so
// progress lines stay off rather than risk garbling output.
func IsTerminal(f *os.File) bool { return false }
