package coord

import (
	"context"
	"fmt"
)

// ACLMode is the access list a Conn gives the nodes it creates, and the one
// an operator applies to an existing cluster (ACLConn.ApplyACL).
type ACLMode int

const (
	// ACLOpen: anyone may do anything (ZooKeeper world:anyone), the list
	// of a Conn without credentials.
	ACLOpen ACLMode = iota
	// ACLCreator: the Conn's authenticated identity has every right, others
	// none, not even reading.
	ACLCreator
	// ACLRead: the Conn's identity has every right, others may read.
	ACLRead
)

// String is the mode's name as ParseACLMode reads it.
func (m ACLMode) String() string {
	switch m {
	case ACLOpen:
		return "open"
	case ACLCreator:
		return "creator"
	case ACLRead:
		return "read"
	}
	return fmt.Sprintf("ACLMode(%d)", int(m))
}

// ParseACLMode reads "open", "creator" or "read"; anything else wraps
// ErrInvalid.
func ParseACLMode(s string) (ACLMode, error) {
	for _, m := range []ACLMode{ACLOpen, ACLCreator, ACLRead} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%w: ACL mode %q: want creator, read or open", ErrInvalid, s)
}

// ACL is one entry of a node's access list, as much of it as is safe to
// show: for a password identity (ZooKeeper digest) ID is the user name
// alone, never the password or its hash.
type ACL struct {
	Scheme string `json:"scheme"` // "world", "digest", "ip", ...
	ID     string `json:"id"`     // "anyone", a user name, an address
	Perms  string `json:"perms"`  // the rights, a subset of "cdrwa" (create, delete, read, write, admin)
}

// String is "scheme:id:perms", ZooKeeper's own notation.
func (a ACL) String() string { return a.Scheme + ":" + a.ID + ":" + a.Perms }

// ACLConn is a Conn whose service keeps an access list on every node
// (zkcoord). Tools use it to show and migrate the lists; the rest of the
// code never needs it, since a Conn creates every node with its own list.
type ACLConn interface {
	Conn
	// ACL returns the node's access list. ErrNoNode if it is missing.
	ACL(ctx context.Context, path string) ([]ACL, error)
	// ApplyACL gives the node the access list of mode for this Conn's
	// identity and reports whether its list was different. With dryRun it
	// only reports. A mode other than ACLOpen needs credentials (ErrInvalid
	// without); changing a node's list needs the admin right on it
	// (ErrNoAuth).
	ApplyACL(ctx context.Context, path string, mode ACLMode, dryRun bool) (changed bool, err error)
}
