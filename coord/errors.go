package coord

import (
	"context"
	"errors"
	"fmt"
)

// Errors of Conn calls. Implementations convert their backend's errors into
// these once, at the edge; callers match them with errors.Is.
var (
	// ErrNoNode: the node (or, for a create, its parent) does not exist.
	ErrNoNode = errors.New("coord: node does not exist")
	// ErrNodeExists: a create found the node already there.
	ErrNodeExists = errors.New("coord: node already exists")
	// ErrBadVersion: a compare-and-set lost, the node changed since it was read.
	ErrBadVersion = errors.New("coord: version conflict")
	// ErrNotEmpty: a delete found children under the node.
	ErrNotEmpty = errors.New("coord: node has children")
	// ErrUnavailable: the coordination service is unreachable or did not answer
	// in time. Whether a write took effect is unknown; read before retrying.
	ErrUnavailable = errors.New("coord: coordination service unavailable")
	// ErrSessionLost: the session ended or is in doubt (disconnected) while a
	// call or watch was in flight. Ephemeral nodes may be gone; re-check them.
	ErrSessionLost = errors.New("coord: session lost")
	// ErrClosed: the Conn was closed.
	ErrClosed = errors.New("coord: connection closed")
	// ErrInvalid: a malformed path or name, or a record that breaks a rule
	// (for example a slot table whose size changed).
	ErrInvalid = errors.New("coord: invalid argument")
	// ErrBadData: a node's content does not decode as the record it should hold.
	ErrBadData = errors.New("coord: malformed record")
	// ErrNoAuth: the service refused the call because the node's access list
	// does not admit this connection's identity (ZooKeeper: its ACL). Retrying
	// does not help; connecting with the right credentials does.
	ErrNoAuth = errors.New("coord: not authorised")
)

// Errors of the election and domain helpers.
var (
	// ErrNoCluster: the cluster has no metadata in the coordination service
	// (it was never created). Errors carrying it also match ErrNoNode.
	ErrNoCluster = errors.New("coord: cluster does not exist")
	// ErrNoChange: returned by an update function to say "leave it as it is";
	// the update helpers then write nothing and return the current value.
	ErrNoChange = errors.New("coord: no change")
	// ErrResigned: the candidate resigned while waiting or leading. It is the
	// cause (context.Cause) of a leader context ended by Resign.
	ErrResigned = errors.New("coord: candidate resigned")
)

// ContextError is the error a Conn call returns when ctx ended before the
// service answered. A passed deadline means the service did not answer in
// time, so the error matches both ErrUnavailable and
// context.DeadlineExceeded; a cancellation matches context.Canceled only.
// It returns nil while ctx is live. It exists for Conn implementations.
func ContextError(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}
