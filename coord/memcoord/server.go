package memcoord

import (
	"fmt"
	"slices"
	"sync"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/internal/notify"
)

// Server is an in-memory tree of nodes shared by the Conns connected to it.
// The zero value is not usable; call New.
type Server struct {
	mu       sync.Mutex
	nodes    map[string]*znode // by path; "/" always exists
	sessions int64             // last session id handed out
}

type znode struct {
	data     []byte
	version  coord.Version
	owner    int64 // session of an ephemeral node, 0 for a persistent one
	children map[string]struct{}
	nextSeq  int64 // sequence number for the next child
	watches  map[*watch]struct{}
}

// watch is one Watch or WatchChildren subscription; exactly one of data and
// kids is set. Guarded by Server.mu.
type watch struct {
	conn     *Conn
	path     string
	data     chan coord.WatchData
	kids     chan coord.ChildrenData
	done     chan struct{} // closed by finish
	finished bool
}

// New returns an empty tree.
func New() *Server {
	return &Server{nodes: map[string]*znode{"/": newZnode(nil, 0)}}
}

func newZnode(data []byte, owner int64) *znode {
	return &znode{
		data:     slices.Clone(data),
		owner:    owner,
		children: map[string]struct{}{},
		watches:  map[*watch]struct{}{},
	}
}

// Connect returns a new client of the tree with a session of its own.
func (s *Server) Connect() *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions++
	return &Conn{
		srv:     s,
		id:      s.sessions,
		session: notify.NewSession(),
		watches: map[*watch]struct{}{},
	}
}

// create adds a node, creating missing parents as persistent nodes. For a
// sequential node path is the prefix and the sequence is appended.
func (s *Server) create(path string, data []byte, owner int64, sequential bool) (string, error) {
	parentPath, name := coord.ParentPath(path)
	parent, err := s.ensureDir(parentPath)
	if err != nil {
		return "", err
	}
	if sequential {
		name += fmt.Sprintf("%010d", parent.nextSeq)
	}
	parent.nextSeq++
	full := coord.JoinPath(parentPath, name)
	if _, ok := s.nodes[full]; ok {
		return "", coord.ErrNodeExists
	}
	s.nodes[full] = newZnode(data, owner)
	parent.children[name] = struct{}{}
	s.childrenChanged(parentPath, parent)
	return full, nil
}

// ensureDir returns the node at path, creating it and its missing ancestors.
func (s *Server) ensureDir(path string) (*znode, error) {
	if n, ok := s.nodes[path]; ok {
		if n.owner != 0 {
			return nil, fmt.Errorf("%w: ephemeral node %s cannot have children", coord.ErrInvalid, path)
		}
		return n, nil
	}
	parentPath, name := coord.ParentPath(path)
	parent, err := s.ensureDir(parentPath)
	if err != nil {
		return nil, err
	}
	n := newZnode(nil, 0)
	s.nodes[path] = n
	parent.nextSeq++
	parent.children[name] = struct{}{}
	s.childrenChanged(parentPath, parent)
	return n, nil
}

func (s *Server) update(path string, data []byte, v coord.Version) (coord.Version, error) {
	n, ok := s.nodes[path]
	switch {
	case !ok:
		return 0, coord.ErrNoNode
	case v != coord.AnyVersion && v != n.version:
		return 0, coord.ErrBadVersion
	}
	n.data = slices.Clone(data)
	n.version++
	for w := range n.watches {
		if w.data != nil {
			notify.Latest(w.data, coord.WatchData{Data: slices.Clone(n.data), Version: n.version})
		}
	}
	return n.version, nil
}

func (s *Server) remove(path string, v coord.Version) error {
	n, ok := s.nodes[path]
	switch {
	case path == "/":
		return fmt.Errorf("%w: the root cannot be deleted", coord.ErrInvalid)
	case !ok:
		return coord.ErrNoNode
	case v != coord.AnyVersion && v != n.version:
		return coord.ErrBadVersion
	case len(n.children) > 0:
		return coord.ErrNotEmpty
	}
	for w := range n.watches {
		w.finish(s, coord.ErrNoNode)
	}
	delete(s.nodes, path)
	parentPath, name := coord.ParentPath(path)
	parent := s.nodes[parentPath]
	delete(parent.children, name)
	parent.nextSeq++
	s.childrenChanged(parentPath, parent)
	return nil
}

func (s *Server) childrenChanged(path string, n *znode) {
	for w := range n.watches {
		if w.kids != nil {
			notify.Latest(w.kids, coord.ChildrenData{Children: sortedNames(n)})
		}
	}
}

// removeEphemerals deletes the nodes of session id.
func (s *Server) removeEphemerals(id int64) {
	var paths []string
	for path, n := range s.nodes {
		if n.owner == id {
			paths = append(paths, path)
		}
	}
	for _, path := range paths {
		_ = s.remove(path, coord.AnyVersion) // ephemeral nodes have no children
	}
}

func sortedNames(n *znode) []string {
	names := make([]string, 0, len(n.children))
	for name := range n.children {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// finish ends w: a non-nil err is delivered as the last event, then the
// channel is closed. Idempotent.
func (w *watch) finish(s *Server, err error) {
	if w.finished {
		return
	}
	w.finished = true
	if n, ok := s.nodes[w.path]; ok {
		delete(n.watches, w)
	}
	delete(w.conn.watches, w)
	if w.data != nil {
		if err != nil {
			notify.Latest(w.data, coord.WatchData{Err: fmt.Errorf("watch %s: %w", w.path, err)})
		}
		close(w.data)
	} else {
		if err != nil {
			notify.Latest(w.kids, coord.ChildrenData{Err: fmt.Errorf("watch children %s: %w", w.path, err)})
		}
		close(w.kids)
	}
	close(w.done)
}
