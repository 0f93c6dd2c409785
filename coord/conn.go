package coord

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Version is the version of a node's data, for compare-and-set: every write of
// the data increments it, and a write that names a version succeeds only while
// the node still has it. The zero value is the version of a new node.
type Version int64

// AnyVersion makes Update and Delete unconditional.
const AnyVersion Version = -1

// Conn is a connection to the coordination service with one session at a time.
// Paths are absolute, slash-separated, without a trailing slash ("/a/b").
// Every method that talks to the service takes a context and returns once it
// ends (see ContextError); errors wrap the sentinels in errors.go and name the
// operation and path. All methods are safe for concurrent use.
type Conn interface {
	// Get returns the node's data and version; ErrNoNode if it is missing.
	Get(ctx context.Context, path string) ([]byte, Version, error)
	// Create creates a persistent node, creating missing parents (with empty
	// data) first, and returns its version (0). ErrNodeExists if it exists.
	Create(ctx context.Context, path string, data []byte) (Version, error)
	// CreateEphemeral creates a node that lives as long as this Conn's current
	// session; missing parents are created as persistent nodes.
	// ErrNodeExists if it exists.
	CreateEphemeral(ctx context.Context, path string, data []byte) error
	// CreateEphemeralSequential creates an ephemeral node named prefix plus a
	// ten-digit sequence number ("%010d") that increases within the parent,
	// and returns its full path.
	CreateEphemeralSequential(ctx context.Context, prefix string, data []byte) (string, error)
	// Update replaces the node's data if its version is still v (AnyVersion:
	// unconditionally) and returns the new version. ErrBadVersion when the
	// version moved on, ErrNoNode when the node is missing.
	Update(ctx context.Context, path string, data []byte, v Version) (Version, error)
	// Delete removes the node if its version is still v (AnyVersion:
	// unconditionally). ErrNotEmpty if it has children, ErrNoNode if missing.
	Delete(ctx context.Context, path string, v Version) error
	// Children returns the names (not paths) of the node's children, sorted.
	Children(ctx context.Context, path string) ([]string, error)
	// Watch returns the node's current data and a channel that delivers each
	// later change. Changes may coalesce: the channel holds at most one
	// unread event, always the latest. The channel is closed when ctx ends
	// (no final event), when the node is deleted (final event Err=ErrNoNode)
	// or when the session is lost or in doubt (final event Err=ErrSessionLost,
	// or ErrClosed after Close); callers that still care watch again.
	// ErrNoNode if the node is missing when the watch starts.
	Watch(ctx context.Context, path string) (WatchData, <-chan WatchData, error)
	// WatchChildren is Watch for the node's sorted list of children names:
	// an event follows each change of the list, with the same contract.
	WatchChildren(ctx context.Context, path string) ([]string, <-chan ChildrenData, error)
	// SessionDone returns a channel closed when the current session ends or
	// is in doubt (ZooKeeper: disconnected or expired). A holder of
	// leadership or any other session-bound right must stop using it at once.
	// Each call after that returns the channel of the next session. After
	// Close the channel is closed.
	SessionDone() <-chan struct{}
	// Lease returns the newest proof that the current session is alive (see
	// SessionLease); the zero value while there is no session and after
	// Close. It never blocks: implementations confirm the session in the
	// background, about every sixth of the session timeout.
	Lease() SessionLease
	// Close ends the session (its ephemeral nodes go away) and releases the
	// connection; later calls fail with ErrClosed. Close is idempotent.
	Close() error
}

// SessionLease is proof that a session was alive: the service answered, in
// session Session, a request sent at Sent (the local clock, with its
// monotonic reading). The service expires a session no sooner than Timeout
// after it last heard from it, so nothing that waits for the session's end
// (its ephemeral nodes' deletion, a successor's election) happens before
// Sent+Timeout, measured on a clock that runs at the rate of the local one.
// A holder of a session-bound right who checks Sent against the monotonic
// clock, with a margin for clock drift, stops in time even if its process
// was paused and none of its goroutines ran (docs/replication.md,
// "Fencing").
type SessionLease struct {
	Session int64 // id of the session; 0: no session
	Sent    time.Time
	Timeout time.Duration // the session timeout the service granted
}

// WatchData is one event of Conn.Watch. The zero value is an event for a node
// with empty data at version 0.
type WatchData struct {
	Data    []byte
	Version Version
	// Err is set only on the last event before the channel closes.
	Err error
}

// ChildrenData is one event of Conn.WatchChildren.
type ChildrenData struct {
	Children []string // sorted names
	// Err is set only on the last event before the channel closes.
	Err error
}

// ValidatePath checks that path is absolute, has no empty, "." or ".."
// element, no trailing slash (except the root "/") and no NUL byte. The error
// wraps ErrInvalid. Conn implementations call it on every path they receive.
func ValidatePath(path string) error {
	if path == "/" {
		return nil
	}
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("%w: path %q is not absolute", ErrInvalid, path)
	}
	for _, elem := range strings.Split(path[1:], "/") {
		if err := validName(elem); err != nil {
			return fmt.Errorf("%w: path %q: %w", ErrInvalid, path, err)
		}
	}
	return nil
}

// ParentPath returns the parent of a valid path other than the root, and the
// last element: ParentPath("/a/b") is "/a", "b"; ParentPath("/a") is "/", "a".
func ParentPath(path string) (parent, name string) {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 {
		return "/", path[i+1:]
	}
	return path[:i], path[i+1:]
}

// JoinPath appends name to the directory dir ("/" or a valid path).
func JoinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}
