package admin

import (
	"bytes"
	"encoding/json"
	"errors"
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
		{"/misc", "0", ""},
		{"/misc/plain", "0", `"hello\nworld"`},
		{"/misc/pretty", "0", `{"a":1}`},
		{"/misc/long", "0", long[:maxDataCell] + "…"},
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
