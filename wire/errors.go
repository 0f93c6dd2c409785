package wire

import (
	"errors"
	"fmt"

	"storj.io/drpc/drpcerr"
)

// Sentinel errors, one per non-OK Code. Errors returned by clients match them
// with errors.Is.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("key not found")
	// ErrMoved: the node does not own the key's slot; the error names the owner.
	ErrMoved = errors.New("slot moved")
	// ErrInvalidArgument: the request itself is wrong (empty or oversized key or value).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnavailable: the node cannot serve now (shutting down, not ready, no primary).
	ErrUnavailable = errors.New("unavailable")
	// ErrCorrupt: the stored record failed its checksum; no data was returned.
	ErrCorrupt = errors.New("data corrupted")
	// ErrNotPrimary: the node belongs to the owning group but is not its primary.
	ErrNotPrimary = errors.New("not the primary")
	// ErrInternal: the node failed in a way the client cannot fix.
	ErrInternal = errors.New("internal error")
	// ErrStaleEpoch: a replication or handover request named an epoch the
	// group is not at; the caller reads the group again.
	ErrStaleEpoch = errors.New("stale epoch")
	// ErrPermissionDenied: the caller's certificate lacks the role the
	// call needs.
	ErrPermissionDenied = errors.New("permission denied")
)

var codeErrors = map[Code]error{
	Code_NOT_FOUND:         ErrNotFound,
	Code_MOVED:             ErrMoved,
	Code_INVALID_ARGUMENT:  ErrInvalidArgument,
	Code_UNAVAILABLE:       ErrUnavailable,
	Code_CORRUPT:           ErrCorrupt,
	Code_NOT_PRIMARY:       ErrNotPrimary,
	Code_INTERNAL:          ErrInternal,
	Code_STALE_EPOCH:       ErrStaleEpoch,
	Code_PERMISSION_DENIED: ErrPermissionDenied,
}

// Error is a non-OK answer from a node. It matches the sentinel of its Code
// with errors.Is; OwnerGroup and TableVersion are set for ErrMoved.
type Error struct {
	Code         Code
	Message      string
	OwnerGroup   string
	TableVersion int64
}

func (e *Error) Error() string {
	if e.Code == Code_MOVED {
		return fmt.Sprintf("slot moved to group %s (slot table v%d)", e.OwnerGroup, e.TableVersion)
	}
	if e.Message == "" {
		return codeErrors[e.Code].Error()
	}
	return e.Message
}

// Is reports whether target is the sentinel of e's code.
func (e *Error) Is(target error) bool { return codeErrors[e.Code] == target }

// ErrorOf converts a response's code into an error; nil for OK.
func ErrorOf(code Code, message, owner string, version int64) error {
	if code == Code_OK {
		return nil
	}
	if _, known := codeErrors[code]; !known {
		return &Error{Code: Code_INTERNAL, Message: fmt.Sprintf("unknown response code %d: %s", code, message)}
	}
	return &Error{Code: code, Message: message, OwnerGroup: owner, TableVersion: version}
}

// CodeOf returns the code for an error built from the sentinels above, and
// INTERNAL for anything else. Servers map their own errors to sentinels first.
func CodeOf(err error) Code {
	if err == nil {
		return Code_OK
	}
	var we *Error
	if errors.As(err, &we) {
		return we.Code
	}
	for code, sentinel := range codeErrors {
		if errors.Is(err, sentinel) {
			return code
		}
	}
	return Code_INTERNAL
}

// Errorf builds the error a dRPC handler returns for a refusal of the given
// code (Replicate, Handover): dRPC carries the code to the caller, where
// FromRPC turns it back into an *Error.
func Errorf(code Code, format string, args ...any) error {
	return drpcerr.WithCode(fmt.Errorf(format, args...), uint64(code))
}

// FromRPC converts an error a dRPC call returned, once, at the caller's
// edge: a refusal made with Errorf becomes the *Error of its code (so it
// matches the sentinels with errors.Is); any other error is returned as it
// is.
func FromRPC(err error) error {
	code := Code(drpcerr.Code(err))
	if _, known := codeErrors[code]; err == nil || !known {
		return err
	}
	return &Error{Code: code, Message: err.Error()}
}
