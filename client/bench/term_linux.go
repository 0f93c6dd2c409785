package bench

import "golang.org/x/sys/unix"

// ioctlGetTermios reads a terminal's attributes; it fails on anything else.
const ioctlGetTermios = unix.TCGETS
