package zkcoord

import (
	"errors"
	"fmt"

	"github.com/go-zookeeper/zk"
	"github.com/thunderyurts/thunderyurts/coord"
)

// convert maps a ZooKeeper client error to coord's sentinels; nothing of the
// zk package's error types leaves this package.
func convert(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, zk.ErrNoNode):
		return coord.ErrNoNode
	case errors.Is(err, zk.ErrNodeExists):
		return coord.ErrNodeExists
	case errors.Is(err, zk.ErrBadVersion):
		return coord.ErrBadVersion
	case errors.Is(err, zk.ErrNotEmpty):
		return coord.ErrNotEmpty
	case errors.Is(err, zk.ErrSessionExpired), errors.Is(err, zk.ErrSessionMoved):
		return fmt.Errorf("%w: %v", coord.ErrSessionLost, err)
	case errors.Is(err, zk.ErrNoAuth), errors.Is(err, zk.ErrAuthFailed):
		return errNoAuth
	case errors.Is(err, zk.ErrClosing):
		return coord.ErrClosed
	case errors.Is(err, zk.ErrInvalidPath), errors.Is(err, zk.ErrNoChildrenForEphemerals),
		errors.Is(err, zk.ErrInvalidFlags), errors.Is(err, zk.ErrBadArguments):
		return fmt.Errorf("%w: %v", coord.ErrInvalid, err)
	default:
		// Connection closed, no server, I/O timeouts, and the server-side
		// failures we never provoke: the service did not serve the call.
		return fmt.Errorf("%w: %v", coord.ErrUnavailable, err)
	}
}

// errNoAuth is ZooKeeper's refusal by a node's ACL, in words for the
// operator, matching coord.ErrNoAuth.
var errNoAuth error = noAuthError{}

type noAuthError struct{}

func (noAuthError) Error() string { return "ZooKeeper refused: not authorised" }
func (noAuthError) Unwrap() error { return coord.ErrNoAuth }

// unreachableError is Dial's error when no server gave a session in time.
type unreachableError struct {
	servers string
	cause   error // the last dial error, or the context's
	ctxErr  error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("zookeeper %s unreachable: %v", e.servers, e.cause)
}

func (e *unreachableError) Unwrap() []error {
	if e.ctxErr == nil {
		return []error{coord.ErrUnavailable}
	}
	return []error{coord.ErrUnavailable, e.ctxErr}
}
