// Package sysproc holds the few process and thread calls whose form differs
// between Linux and the other Unix systems thunderctl builds on (macOS), so
// the packages that use them stay free of build tags; and Background, which
// runs work no client waits on at a lower CPU priority than the rest.
package sysproc
