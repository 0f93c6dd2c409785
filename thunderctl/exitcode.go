package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
)

// Exit codes, as the README documents them.
const (
	exitOK       = 0 // success
	exitFailed   = 1 // the operation failed: unavailable, timed out, refused
	exitUsage    = 2 // bad usage or invalid input
	exitNotFound = 3 // get: key not found
)

// usageError marks a mistake in the command line itself (or in the
// environment or config file standing in for it).
type usageError struct {
	msg   string
	help  string // the command that explains the usage: "thunderctl help serve data"
	cause error
}

func (e *usageError) Error() string { return e.msg }
func (e *usageError) Unwrap() error { return e.cause }

// usagef is a usage error of the command that runs; inCommand names it.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// usageIn is a usage error of c's command.
func usageIn(c *cli.Context, format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...), help: helpFor(c)}
}

// inCommand makes err, returned by c's command, name the command whose help
// explains it when it is a usage error or invalid input.
func inCommand(c *cli.Context, err error) error {
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		if ue.help == "" {
			ue.help = helpFor(c)
		}
	case errors.Is(err, client.ErrInvalidArgument):
		return &usageError{msg: err.Error(), help: helpFor(c), cause: err}
	}
	return err
}

// helpFor is the help command for c's command.
func helpFor(c *cli.Context) string {
	return strings.TrimSpace("thunderctl help " + commandPath(c))
}

// exitCodeOf maps an error to the exit code a script can rely on.
func exitCodeOf(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, coord.ErrNoAuth):
		// ZooKeeper refused: the operation failed, whatever wraps it.
		return exitFailed
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
		return &usageError{msg: err.Error(), cause: err}
	}
	return err
}

// errorLine is the one line an error gets on stderr (README, "Exit codes"):
// a usage error ends with where to read the usage.
func errorLine(err error) string {
	line := "thunderctl: " + strings.Join(strings.Fields(err.Error()), " ")
	var ue *usageError
	if errors.As(err, &ue) {
		help := ue.help
		if help == "" {
			help = "thunderctl help"
		}
		line += fmt.Sprintf(" (see '%s')", help)
	}
	if errors.Is(err, coord.ErrNoAuth) {
		line += " (need --zk-auth with the cluster's ZooKeeper credentials)"
	}
	return line
}
