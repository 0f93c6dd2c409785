package backup

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrBadDest: a destination that is no directory, file:// or s3:// URL.
var ErrBadDest = errors.New("invalid backup destination")

// CheckDest checks the form of a destination, without opening it, so a
// command can refuse a malformed one as bad input (OpenStore also checks
// that it exists).
func CheckDest(dest string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrBadDest, dest, why) }
	switch {
	case dest == "":
		return bad("empty")
	case strings.HasPrefix(dest, "s3://"):
		u, err := url.Parse(dest)
		if err != nil || u.Host == "" {
			return bad("want s3://bucket/prefix")
		}
	case strings.HasPrefix(dest, "file://"):
		u, err := url.Parse(dest)
		if err != nil || (u.Host != "" && u.Host != "localhost") || u.Path == "" {
			return bad("want file:///absolute/path")
		}
	case strings.Contains(dest, "://"):
		return bad("unknown scheme (want a directory, file:// or s3://)")
	}
	return nil
}
