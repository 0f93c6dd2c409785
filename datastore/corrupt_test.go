package datastore

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// flipStored writes one record with a recognisable value, closes the store
// and flips one byte of the value's copy in either the slot bucket (inLog
// false) or the op log (inLog true). Values in the op log follow their key;
// in the slot bucket they follow the 4-byte checksum.
func flipStored(t *testing.T, inLog bool) (path string, key []byte) {
	t.Helper()
	key = []byte("victim-key")
	value := []byte("CANARY-0123456789-abcdefghijklmnopqrstuvwxyz")
	s, path := newStore(t, Options{NoSync: true})
	mustPut(t, s, 7, "neighbour", "fine")
	mustPut(t, s, 7, string(key), string(value))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flipped := 0
	for off := 0; ; {
		i := bytes.Index(data[off:], value)
		if i < 0 {
			break
		}
		at := off + i
		off = at + len(value)
		if bytes.HasSuffix(data[:at], key) == inLog {
			data[at+5] ^= 0x01
			flipped++
		}
	}
	if flipped == 0 {
		t.Fatalf("value not found in %s (log copy: %v)", path, inLog)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
}

func TestCorruptValue(t *testing.T) {
	path, key := flipStored(t, false)
	s := openStore(t, path, Options{})
	_, err := s.Get(7, key)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("get corrupted value: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "slot 7") || !strings.Contains(msg, `"victim-key"`) {
		t.Fatalf("error does not name slot and key: %q", msg)
	}
	if got := mustGet(t, s, 7, "neighbour"); got != "fine" {
		t.Fatalf("neighbour = %q", got)
	}
	res := s.GetMany([]KeyRef{{Slot: 7, Key: key}, {Slot: 7, Key: []byte("neighbour")}})
	if !errors.Is(res[0].Err, ErrCorrupt) || res[0].Value != nil || res[1].Err != nil {
		t.Fatalf("GetMany = %+v", res)
	}
	if kvs, err := s.Scan([]int{7}, nil, nil, 0); !errors.Is(err, ErrCorrupt) || kvs != nil {
		t.Fatalf("scan over corrupted value: %d pairs, %v", len(kvs), err)
	}
	// The log copy is intact.
	if _, err := s.ReadLog(1, 0); err != nil {
		t.Fatalf("read log: %v", err)
	}
}

func TestCorruptLogEntry(t *testing.T) {
	path, key := flipStored(t, true)
	s := openStore(t, path, Options{})
	entries, err := s.ReadLog(1, 0)
	if !errors.Is(err, ErrCorrupt) || entries != nil {
		t.Fatalf("read corrupted log: %d entries, %v", len(entries), err)
	}
	if !strings.Contains(err.Error(), "seq 2") {
		t.Fatalf("error does not name the seq: %v", err)
	}
	if _, err := s.ReadLog(1, 1); err != nil {
		t.Fatalf("entry before the corrupted one: %v", err)
	}
	if _, err := s.Get(7, key); err != nil {
		t.Fatalf("the value itself is intact: %v", err)
	}
}

func TestKeyForErrorTruncates(t *testing.T) {
	got := keyForError(bytes.Repeat([]byte{0xff}, 4096))
	if len(got) > 400 || !strings.Contains(got, "4096 bytes") {
		t.Fatalf("key rendered as %d chars: %.80s", len(got), got)
	}
}
