package main

import (
	"errors"

	"github.com/thunderyurts/thunderyurts/client"
)

// Exit codes, as the README documents them.
const (
	exitOK       = 0 // success
	exitFailed   = 1 // the operation failed: unavailable, timed out, refused
	exitUsage    = 2 // bad usage or invalid input
	exitNotFound = 3 // get: key not found
)

// usageError marks a mistake in the command line itself.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(msg string) error { return &usageError{msg: msg} }

// exitCodeOf maps an error to the exit code a script can rely on.
func exitCodeOf(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), errors.Is(err, client.ErrInvalidArgument):
		return exitUsage
	case errors.Is(err, client.ErrNotFound):
		return exitNotFound
	}
	return exitFailed
}

// usageOr turns err into a usage error when it matches sentinel.
func usageOr(err, sentinel error) error {
	if errors.Is(err, sentinel) {
		return usagef(err.Error())
	}
	return err
}
