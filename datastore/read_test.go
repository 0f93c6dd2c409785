package datastore

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestScan(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	var muts []Mutation
	var all []string
	for i := range 30 {
		k := fmt.Sprintf("key%02d", i)
		muts = append(muts, Mutation{Slot: i % 3, Key: []byte(k), Value: []byte("v" + k)})
		all = append(all, k)
	}
	muts = append(muts, Mutation{Slot: 5, Key: []byte("zzz"), Value: []byte("other slot")})
	if _, err := s.Write(ctx, muts); err != nil {
		t.Fatal(err)
	}
	keys := func(kvs []KV) []string {
		var out []string
		for _, kv := range kvs {
			if string(kv.Value) != "v"+string(kv.Key) {
				t.Fatalf("key %q has value %q", kv.Key, kv.Value)
			}
			out = append(out, string(kv.Key))
		}
		return out
	}
	cases := []struct {
		name       string
		slots      []int
		start, end string
		limit      int
		want       []string
	}{
		{"all", []int{2, 0, 1}, "", "", 0, all},
		{"duplicate slots", []int{0, 1, 2, 2, 0}, "", "", 0, all},
		{"start", []int{0, 1, 2}, "key25", "", 0, all[25:]},
		{"start between keys", []int{0, 1, 2}, "key245", "", 0, all[25:]},
		{"end", []int{0, 1, 2}, "", "key05", 0, all[:5]},
		{"range", []int{0, 1, 2}, "key10", "key20", 0, all[10:20]},
		{"limit", []int{0, 1, 2}, "key10", "", 4, all[10:14]},
		{"one slot", []int{1}, "", "key10", 0, []string{"key01", "key04", "key07"}},
		{"empty range", []int{0, 1, 2}, "key20", "key10", 0, nil},
		{"empty slot", []int{9}, "", "", 0, nil},
		{"no slots", nil, "", "", 0, nil},
	}
	for _, c := range cases {
		var start, end []byte
		if c.start != "" {
			start = []byte(c.start)
		}
		if c.end != "" {
			end = []byte(c.end)
		}
		got, err := s.Scan(ctx, c.slots, start, end, Limit{Entries: c.limit})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if g := keys(got); !slices.Equal(g, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, g, c.want)
		}
	}
	if _, err := s.Scan(ctx, []int{0, 16}, nil, nil, Limit{}); !errors.Is(err, ErrBadSlot) {
		t.Fatalf("scan bad slot: %v", err)
	}
	// Deleted keys disappear from scans.
	if _, err := s.Write(ctx, []Mutation{{Slot: 0, Key: []byte("key00"), Delete: true}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Scan(ctx, []int{0, 1, 2}, nil, nil, Limit{Entries: 2})
	if err != nil || !slices.Equal(keys(got), all[1:3]) {
		t.Fatalf("scan after delete: %v, %v", keys(got), err)
	}
}

func TestGetMany(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	mustPut(t, s, 1, "a", "A")
	mustPut(t, s, 2, "b", "")
	res := s.GetMany([]KeyRef{
		{Slot: 1, Key: []byte("a")},
		{Slot: 2, Key: []byte("a")},
		{Slot: 2, Key: []byte("b")},
		{Slot: 17, Key: []byte("a")},
		{Slot: 1, Key: nil},
		{Slot: 7, Key: []byte("a")},
	})
	want := []struct {
		v   string
		err error
	}{{"A", nil}, {"", ErrNotFound}, {"", nil}, {"", ErrBadSlot}, {"", ErrEmptyKey}, {"", ErrNotFound}}
	for i, w := range want {
		if !errors.Is(res[i].Err, w.err) || string(res[i].Value) != w.v || (w.err == nil) != (res[i].Value != nil) {
			t.Errorf("ref %d: %q, %v; want %q, %v", i, res[i].Value, res[i].Err, w.v, w.err)
		}
	}
	// Values must not share capacity: appending to one may not clobber another.
	_ = append(res[0].Value, 'x')
	if string(res[0].Value) != "A" {
		t.Fatalf("value changed to %q", res[0].Value)
	}
}

// A byte bound stops ReadLog and Scan once the values returned reach it,
// the crossing entry included, so large values never make one huge answer.
func TestLimitBytes(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true, AutoCommit: true})
	big := strings.Repeat("v", 1000)
	for i := range 10 {
		mustPut(t, s, 0, fmt.Sprintf("k%d", i), big)
	}
	entries, err := s.ReadLog(1, Limit{Bytes: 2500})
	if err != nil || len(entries) != 3 || entries[2].Seq != 3 {
		t.Fatalf("ReadLog within 2500 bytes: %d entries, %v", len(entries), err)
	}
	if entries, err = s.ReadLog(1, Limit{Entries: 2, Bytes: 1 << 20}); err != nil || len(entries) != 2 {
		t.Fatalf("ReadLog of 2 entries: %d entries, %v", len(entries), err)
	}
	kvs, err := s.Scan(testCtx(t), []int{0}, nil, nil, Limit{Bytes: 2500})
	if err != nil || len(kvs) != 3 || string(kvs[2].Key) != "k2" {
		t.Fatalf("Scan within 2500 bytes: %d pairs, %v", len(kvs), err)
	}
}
