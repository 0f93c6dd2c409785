package datastore

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestValidation(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true, MaxValueSize: 100})
	ctx := testCtx(t)
	mustPut(t, s, 0, "x", "y")
	before := s.LastSeq()
	cases := []struct {
		name string
		muts []Mutation
		want error
		says string
	}{
		{"empty key", []Mutation{{Slot: 1, Key: nil, Value: []byte("v")}}, ErrEmptyKey, "mutation 0"},
		{"key too large", []Mutation{{Slot: 1, Key: make([]byte, 4097)}}, ErrKeyTooLarge, "4097"},
		{"value too large", []Mutation{{Slot: 1, Key: []byte("k"), Value: make([]byte, 101)}}, ErrValueTooLarge, "101"},
		{"negative slot", []Mutation{{Slot: -1, Key: []byte("k")}}, ErrBadSlot, "slot -1"},
		{"slot too high", []Mutation{{Slot: 16, Key: []byte("k")}}, ErrBadSlot, "slot 16"},
		{"second of batch", []Mutation{{Slot: 1, Key: []byte("ok")}, {Slot: 1, Key: nil}}, ErrEmptyKey, "mutation 1"},
	}
	for _, c := range cases {
		_, err := s.Write(ctx, c.muts)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: err = %v, want %v mentioning %q", c.name, err, c.want, c.says)
		}
	}
	if s.LastSeq() != before {
		t.Fatalf("LastSeq moved from %d to %d after refused writes", before, s.LastSeq())
	}
	if _, err := s.Get(1, []byte("ok")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("valid half of a refused batch was written: %v", err)
	}
	if err := s.Validate(make([]byte, 4096), make([]byte, 100)); err != nil {
		t.Fatalf("Validate at the limits: %v", err)
	}
	if err := s.Validate([]byte("k"), make([]byte, 101)); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("Validate large value: %v", err)
	}
	// Deletes carry no value, so the value limit does not apply.
	if _, err := s.Write(ctx, []Mutation{{Slot: 0, Key: []byte("x"), Value: make([]byte, 101), Delete: true}}); err != nil {
		t.Fatalf("delete with ignored value: %v", err)
	}

	// Arbitrary bytes are fine, including NUL and 0xff, and the largest key.
	keys := [][]byte{{0x00}, {0xff, 0xff}, {0x00, 'a', 0xff}, bytes.Repeat([]byte{0xff}, 4096)}
	for i, k := range keys {
		if _, err := s.Write(ctx, []Mutation{{Slot: 2, Key: k, Value: []byte{byte(i)}}}); err != nil {
			t.Fatalf("write key %x: %v", k, err)
		}
	}
	for i, k := range keys {
		v, err := s.Get(2, k)
		if err != nil || !bytes.Equal(v, []byte{byte(i)}) {
			t.Fatalf("get key %x = %v, %v", k, v, err)
		}
	}
	if _, err := s.Get(2, nil); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("get empty key: %v", err)
	}
	if _, err := s.Get(99, []byte("k")); !errors.Is(err, ErrBadSlot) {
		t.Fatalf("get bad slot: %v", err)
	}
}
