package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/thunderyurts/thunderyurts/coord"
)

// maxDataCell is how much of a znode's content a table row shows; the JSON
// format always carries all of it.
const maxDataCell = 120

// Znode is one znode and, when read recursively, its subtree.
type Znode struct {
	Path    string `json:"path"`
	Version int64  `json:"version"`
	// ACL is the znode's access list ("digest:thunder:cdrwa"; a digest
	// entry shows the user alone); empty when the service keeps none.
	ACL []coord.ACL `json:"acl,omitempty"`
	// Data is the content: embedded as is when it is JSON (as every
	// ThunderYurts znode is), else as a JSON string; nil when empty.
	Data json.RawMessage `json:"data,omitempty"`
	// Children are in name order; nil when not read.
	Children []*Znode `json:"children,omitempty"`
}

// ZnodePath resolves p, relative to cluster's root znode (a leading slash
// changes nothing: "/groups" is "groups"), to an absolute path. A path that
// would leave the cluster's namespace ("../..") is an error wrapping
// coord.ErrInvalid, as are a bad cluster name and path elements ZooKeeper
// refuses.
func ZnodePath(cluster, p string) (string, error) {
	if err := coord.CheckName("cluster", cluster); err != nil {
		return "", err
	}
	root := coord.ClusterPath(cluster)
	abs := path.Join(root, p)
	if abs != root && !strings.HasPrefix(abs, root+"/") {
		return "", fmt.Errorf("%w: path %q leaves the cluster's namespace %s", coord.ErrInvalid, p, root)
	}
	if err := coord.ValidatePath(abs); err != nil {
		return "", err
	}
	return abs, nil
}

// ReadZnodes reads the znode at p (an absolute ZooKeeper path; the caller
// resolves paths relative to the cluster root) and its children: the whole
// subtree when recursive, else only the direct children, without theirs.
// A child deleted while it is read (an ephemeral node's session ending) is
// left out. Errors name the path and wrap coord.ErrNoNode when p does not
// exist.
func ReadZnodes(ctx context.Context, conn coord.Conn, p string, recursive bool) (*Znode, error) {
	depth := 1
	if recursive {
		depth = -1
	}
	return readZnode(ctx, conn, p, depth)
}

// readZnode reads p and its children down to depth levels (-1: all).
func readZnode(ctx context.Context, conn coord.Conn, p string, depth int) (*Znode, error) {
	data, version, err := conn.Get(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("read znode %s: %w", p, err)
	}
	z := &Znode{Path: p, Version: int64(version), Data: decodeData(data)}
	if ac, ok := conn.(coord.ACLConn); ok {
		if z.ACL, err = ac.ACL(ctx, p); err != nil && !errors.Is(err, coord.ErrNoNode) {
			return nil, fmt.Errorf("read znode %s: %w", p, err)
		}
	}
	if depth == 0 {
		return z, nil
	}
	names, err := conn.Children(ctx, p)
	if errors.Is(err, coord.ErrNoNode) {
		return z, nil // deleted since the Get
	}
	if err != nil {
		return nil, fmt.Errorf("list children of znode %s: %w", p, err)
	}
	slices.Sort(names)
	for _, name := range names {
		child, err := readZnode(ctx, conn, coord.JoinPath(p, name), depth-1)
		if errors.Is(err, coord.ErrNoNode) {
			continue
		}
		if err != nil {
			return nil, err
		}
		z.Children = append(z.Children, child)
	}
	return z, nil
}

// decodeData makes content embeddable in JSON output.
func decodeData(data []byte) json.RawMessage {
	if len(data) == 0 {
		return nil
	}
	if json.Valid(data) {
		var compact bytes.Buffer
		if json.Compact(&compact, data) == nil {
			return compact.Bytes()
		}
	}
	s, _ := json.Marshal(string(data)) // cannot fail for a string
	return s
}

// PrintZnodes renders z and its subtree: for FormatTable one PATH | VERSION
// | ACL | DATA row per znode, depth first, with the data on one line and cut at
// 120 characters; for FormatJSON the tree as indented JSON. It returns w's
// write error, or ErrUnknownFormat.
func PrintZnodes(w io.Writer, z *Znode, f Format) error {
	return render(w, f, z, func() error {
		ew := &errWriter{w: w}
		var rows [][]string
		var walk func(*Znode)
		walk = func(z *Znode) {
			rows = append(rows, []string{z.Path, strconv.FormatInt(z.Version, 10), aclCell(z.ACL), dataCell(z.Data)})
			for _, c := range z.Children {
				walk(c)
			}
		}
		walk(z)
		ew.table("", []string{"PATH", "VERSION", "ACL", "DATA"}, rows)
		return ew.err
	})
}

// aclCell is an access list on one line, ZooKeeper's notation.
func aclCell(list []coord.ACL) string {
	s := make([]string, len(list))
	for i, a := range list {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// ACLChange is what ApplyACL did, or would do, to a subtree.
type ACLChange struct {
	Root    string `json:"root"`
	Mode    string `json:"mode"`
	DryRun  bool   `json:"dry_run"`
	Znodes  int    `json:"znodes"`  // in the subtree
	Changed int    `json:"changed"` // whose access list was (or would be) replaced
}

// ApplyACL gives every znode of the subtree at root (an absolute path) the
// access list of mode for conn's identity, parents before children, and
// counts the znodes whose list changed; with dryRun it changes nothing. It
// is idempotent: a second run changes nothing. Znodes deleted meanwhile
// (ephemeral ones) are skipped; those created meanwhile get the list of
// the Conn that creates them.
func ApplyACL(ctx context.Context, conn coord.ACLConn, root string, mode coord.ACLMode, dryRun bool) (*ACLChange, error) {
	res := &ACLChange{Root: root, Mode: mode.String(), DryRun: dryRun}
	var walk func(p string) error
	walk = func(p string) error {
		changed, err := conn.ApplyACL(ctx, p, mode, dryRun)
		if errors.Is(err, coord.ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		res.Znodes++
		if changed {
			res.Changed++
		}
		names, err := conn.Children(ctx, p)
		if errors.Is(err, coord.ErrNoNode) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list children of znode %s: %w", p, err)
		}
		for _, name := range names {
			if err := walk(coord.JoinPath(p, name)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return nil, err
	}
	if res.Znodes == 0 {
		return nil, fmt.Errorf("set ACL %s: %w", root, coord.ErrNoNode)
	}
	return res, nil
}

// PrintACLChange renders r: one sentence for FormatTable.
func PrintACLChange(w io.Writer, r *ACLChange, f Format) error {
	return render(w, f, r, func() error {
		ew := &errWriter{w: w}
		verb := "changed"
		if r.DryRun {
			verb = "would change (dry run)"
		}
		ew.printf("%s: %s the ACL of %d of %d znodes to %s\n", r.Root, verb, r.Changed, r.Znodes, r.Mode)
		return ew.err
	})
}

// dataCell is the one-line, bounded form of a znode's data for a table.
func dataCell(data json.RawMessage) string {
	s := string(data) // already compact: decodeData compacted it
	if len(s) <= maxDataCell {
		return s
	}
	cut := maxDataCell
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
