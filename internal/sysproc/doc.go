// Package sysproc holds the few process and thread calls whose form differs
// between Linux and the other Unix systems thunderctl builds on (macOS), so
// the packages that use them stay free of build tags.
package sysproc
