package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/thunderyurts/thunderyurts/coord"
)

func TestReadZnodes(t *testing.T) {
	ctx := testContext(t)
	cl := newTestCluster(t)
	root := coord.ClusterPath("default")

	z, err := ReadZnodes(ctx, cl.Conn(), root, true)
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]*Znode{}
	var walk func(*Znode)
	walk = func(z *Znode) {
		byPath[z.Path] = z
		for _, c := range z.Children {
			walk(c)
		}
	}
	walk(z)
	for _, p := range []string{"/meta", "/slots", "/groups", "/groups/g1", "/nodes/n1", "/nodes/n2", "/coordinators"} {
		if byPath[root+p] == nil {
			t.Errorf("recursive read lacks %s", root+p)
		}
	}
	var g coord.Group
	if err := json.Unmarshal(byPath[root+"/groups/g1"].Data, &g); err != nil || g.Primary != "n1" {
		t.Errorf("group data %s does not decode as the group: %v", byPath[root+"/groups/g1"].Data, err)
	}
	if v := byPath[root+"/groups/g1"].Version; v != 1 {
		t.Errorf("group g1 version = %d, want 1 (one update)", v)
	}

	shallow, err := ReadZnodes(ctx, cl.Conn(), root, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(shallow.Children) != 5 {
		t.Errorf("non-recursive read has %d children, want 5", len(shallow.Children))
	}
	for _, c := range shallow.Children {
		if c.Children != nil {
			t.Errorf("non-recursive read went below %s", c.Path)
		}
	}

	_, err = ReadZnodes(ctx, cl.Conn(), root+"/missing", false)
	if !errors.Is(err, coord.ErrNoNode) || !strings.Contains(err.Error(), root+"/missing") {
		t.Errorf("err = %v, want ErrNoNode naming the path", err)
	}
}

func TestPrintZnodes(t *testing.T) {
	ctx := testContext(t)
	cl := newTestCluster(t)
	conn := cl.Conn()
	long := `{"blob":"` + strings.Repeat("x", 300) + `"}`
	for p, data := range map[string]string{
		"/misc/plain":  "hello\nworld",
		"/misc/long":   long,
		"/misc/pretty": "{\n  \"a\": 1\n}",
	} {
		if _, err := conn.Create(ctx, p, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	z, err := ReadZnodes(ctx, conn, "/misc", true)
	if err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if err := PrintZnodes(&buf, z, FormatTable); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Logf("\n%s", out)
	for _, cells := range [][]string{
		{"/misc", "0", "", ""},
		{"/misc/plain", "0", "", `"hello\nworld"`},
		{"/misc/pretty", "0", "", `{"a":1}`},
		{"/misc/long", "0", "", long[:maxDataCell] + "…"},
	} {
		if !hasRow(out, cells) {
			t.Errorf("no row %q", cells)
		}
	}
	if strings.Index(out, "/misc/long") > strings.Index(out, "/misc/plain") {
		t.Error("rows are not in name order")
	}

	buf.Reset()
	if err := PrintZnodes(&buf, z, FormatJSON); err != nil {
		t.Fatal(err)
	}
	var back Znode
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("decode: %v\n%s", err, buf.String())
	}
	if len(back.Children) != 3 || string(back.Children[1].Data) != `"hello\nworld"` {
		t.Errorf("JSON tree = %s", buf.String())
	}
	var pretty map[string]int
	if err := json.Unmarshal(back.Children[2].Data, &pretty); err != nil || pretty["a"] != 1 {
		t.Errorf("JSON content not embedded as JSON: %s", back.Children[2].Data)
	}
	if len(back.Children[0].Data) <= maxDataCell {
		t.Error("JSON output truncated the data")
	}
}

func TestZnodePath(t *testing.T) {
	root := coord.ClusterPath("c1")
	for p, want := range map[string]string{
		"":                root,
		"/":               root,
		"groups":          root + "/groups",
		"/groups/g1/":     root + "/groups/g1",
		"groups/../slots": root + "/slots",
	} {
		if got, err := ZnodePath("c1", p); err != nil || got != want {
			t.Errorf("ZnodePath(c1, %q) = %q, %v; want %q", p, got, err, want)
		}
	}
	for _, tc := range []struct{ cluster, p string }{
		{"c1", "/../../zookeeper"},
		{"c1", ".."},
		{"c1", "../c2/slots"},
		{"c1", "groups/\x01"},
		{"a/b", ""},
		{"..", ""},
	} {
		if got, err := ZnodePath(tc.cluster, tc.p); !errors.Is(err, coord.ErrInvalid) {
			t.Errorf("ZnodePath(%q, %q) = %q, %v; want ErrInvalid", tc.cluster, tc.p, got, err)
		}
	}
}

// aclConn is a coord.ACLConn on memcoord: each node's mode, open until set.
type aclConn struct {
	coord.Conn
	modes map[string]coord.ACLMode
}

func (c *aclConn) ACL(ctx context.Context, p string) ([]coord.ACL, error) {
	if _, _, err := c.Get(ctx, p); err != nil {
		return nil, err
	}
	switch c.modes[p] {
	case coord.ACLCreator:
		return []coord.ACL{{Scheme: "digest", ID: "thunder", Perms: "cdrwa"}}, nil
	case coord.ACLRead:
		return []coord.ACL{{Scheme: "digest", ID: "thunder", Perms: "cdrwa"}, {Scheme: "world", ID: "anyone", Perms: "r"}}, nil
	}
	return []coord.ACL{{Scheme: "world", ID: "anyone", Perms: "cdrwa"}}, nil
}

func (c *aclConn) ApplyACL(ctx context.Context, p string, mode coord.ACLMode, dryRun bool) (bool, error) {
	if _, _, err := c.Get(ctx, p); err != nil {
		return false, err
	}
	if c.modes[p] == mode {
		return false, nil
	}
	if !dryRun {
		c.modes[p] = mode
	}
	return true, nil
}

func TestApplyACLAndShowIt(t *testing.T) {
	ctx := testContext(t)
	cl := newTestCluster(t)
	conn := &aclConn{Conn: cl.Conn(), modes: map[string]coord.ACLMode{}}
	root := coord.ClusterPath("default")
	all, err := ReadZnodes(ctx, conn, root, true)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var count func(*Znode)
	count = func(z *Znode) {
		n++
		for _, c := range z.Children {
			count(c)
		}
	}
	count(all)

	for _, step := range []struct {
		mode         coord.ACLMode
		dryRun       bool
		wantChanged  int
		wantRootCell string
	}{
		{coord.ACLCreator, true, n, "world:anyone:cdrwa"},
		{coord.ACLCreator, false, n, "digest:thunder:cdrwa"},
		{coord.ACLCreator, false, 0, "digest:thunder:cdrwa"},
		{coord.ACLRead, false, n, "digest:thunder:cdrwa,world:anyone:r"},
		{coord.ACLOpen, false, n, "world:anyone:cdrwa"},
	} {
		res, err := ApplyACL(ctx, conn, root, step.mode, step.dryRun)
		if err != nil {
			t.Fatal(err)
		}
		if res.Znodes != n || res.Changed != step.wantChanged {
			t.Errorf("%s dry run %v: %+v, want %d of %d changed", step.mode, step.dryRun, res, step.wantChanged, n)
		}
		z, err := ReadZnodes(ctx, conn, root, false)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := PrintZnodes(&buf, z, FormatTable); err != nil {
			t.Fatal(err)
		}
		if !hasRow(buf.String(), []string{root, "0", step.wantRootCell}) {
			t.Errorf("after %s dry run %v:\n%s\nwant ACL %s", step.mode, step.dryRun, buf.String(), step.wantRootCell)
		}
	}
	var buf bytes.Buffer
	res, _ := ApplyACL(ctx, conn, root, coord.ACLCreator, true)
	if err := PrintACLChange(&buf, res, FormatTable); err != nil || buf.String() != root+": would change (dry run) the ACL of "+strconv.Itoa(n)+" of "+strconv.Itoa(n)+" znodes to creator\n" {
		t.Errorf("print: %q, %v", buf.String(), err)
	}
	if _, err := ApplyACL(ctx, conn, root+"/missing", coord.ACLCreator, false); !errors.Is(err, coord.ErrNoNode) {
		t.Errorf("apply to a missing subtree: %v, want ErrNoNode", err)
	}
}
