package client

import (
	"context"
	"errors"

	"github.com/thunderyurts/thunderyurts/coord"
)

// edgeError makes an error of ZooKeeper or the route source match the
// client's sentinels, once, where it enters the client: every unavailability
// matches ErrUnavailable and a malformed address ErrInvalidArgument, the
// message unchanged and the original error still in the chain.
func edgeError(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrUnavailable), errors.Is(err, ErrInvalidArgument):
		return err
	case errors.Is(err, coord.ErrUnavailable), errors.Is(err, coord.ErrSessionLost),
		errors.Is(err, context.DeadlineExceeded), isDialError(err):
		return &sentinelError{err: err, sentinel: ErrUnavailable}
	case errors.Is(err, coord.ErrInvalid):
		return &sentinelError{err: err, sentinel: ErrInvalidArgument}
	}
	return err
}

// sentinelError is err, also matching sentinel.
type sentinelError struct {
	err      error
	sentinel error
}

func (e *sentinelError) Error() string        { return e.err.Error() }
func (e *sentinelError) Unwrap() error        { return e.err }
func (e *sentinelError) Is(target error) bool { return target == e.sentinel }
