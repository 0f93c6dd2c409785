package backup

import (
	"errors"
	"fmt"
)

// ErrBadDest: a destination that is no directory, file:// or s3:// URL.
var ErrBadDest = errors.New("invalid backup destination")

// CheckDest checks the form of a destination without opening it, so a
// command can refuse a malformed one as bad input (OpenStore also checks
// that the directory or bucket exists).
func CheckDest(dest string) error {
	if _, err := parseDest(dest); err != nil {
		return fmt.Errorf("%w %q: %w", ErrBadDest, dest, err)
	}
	return nil
}
