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
// | DATA row per znode, depth first, with the data on one line and cut at
// 120 characters; for FormatJSON the tree as indented JSON. It returns w's
// write error, or ErrUnknownFormat.
func PrintZnodes(w io.Writer, z *Znode, f Format) error {
	return render(w, f, z, func() error {
		ew := &errWriter{w: w}
		var rows [][]string
		var walk func(*Znode)
		walk = func(z *Znode) {
			rows = append(rows, []string{z.Path, strconv.FormatInt(z.Version, 10), dataCell(z.Data)})
			for _, c := range z.Children {
				walk(c)
			}
		}
		walk(z)
		ew.table("", []string{"PATH", "VERSION", "DATA"}, rows)
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
