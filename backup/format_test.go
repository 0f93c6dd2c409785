package backup_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/thunderyurts/thunderyurts/backup"
)

type record struct{ k, v []byte }

var testHeader = backup.SlotHeader{Slot: 7, Slots: 16, Group: "g1", Epoch: 3, Sequence: 12345}

// writeSlot returns the slot file of hdr holding recs.
func writeSlot(t testing.TB, hdr backup.SlotHeader, recs []record) ([]byte, backup.SlotSummary) {
	t.Helper()
	var buf bytes.Buffer
	w := backup.NewSlotWriter(&buf, hdr)
	for _, r := range recs {
		if err := w.Add(r.k, r.v); err != nil {
			t.Fatalf("add %q: %v", r.k, err)
		}
	}
	sum, err := w.Close()
	if err != nil {
		t.Fatalf("close: %v", err)
	}
	return buf.Bytes(), sum
}

// readSlot reads a slot file to the end.
func readSlot(data []byte, name string) (backup.SlotHeader, []record, error) {
	r, err := backup.NewSlotReader(bytes.NewReader(data), name)
	if err != nil {
		return backup.SlotHeader{}, nil, err
	}
	var recs []record
	for {
		k, v, err := r.Next()
		if err == io.EOF {
			return r.Header(), recs, nil
		}
		if err != nil {
			return r.Header(), recs, err
		}
		recs = append(recs, record{bytes.Clone(k), bytes.Clone(v)})
	}
}

func TestSlotFileRoundTrip(t *testing.T) {
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	recs := []record{
		{[]byte("k"), []byte("v")},
		{allBytes, allBytes}, // binary key and value
		{[]byte{0}, nil},     // empty value
		{bytes.Repeat([]byte{0xff}, backup.MaxKeySize), []byte("max key")},
		{[]byte("big"), big},                   // 4 MiB value
		{[]byte("k"), []byte("duplicate key")}, // the format does not care
	}
	data, sum := writeSlot(t, testHeader, recs)
	var wantBytes int64
	for _, r := range recs {
		wantBytes += int64(len(r.k) + len(r.v))
	}
	sha := sha256.Sum256(data)
	if sum.Keys != int64(len(recs)) || sum.Bytes != wantBytes || sum.Size != int64(len(data)) || sum.SHA256 != hex.EncodeToString(sha[:]) {
		t.Fatalf("summary %+v; want %d keys, %d bytes, size %d, sha %x", sum, len(recs), wantBytes, len(data), sha)
	}
	hdr, got, err := readSlot(data, "slot-0007.tyb")
	if err != nil {
		t.Fatal(err)
	}
	if hdr != testHeader {
		t.Fatalf("header %+v, want %+v", hdr, testHeader)
	}
	if len(got) != len(recs) {
		t.Fatalf("read %d records, want %d", len(got), len(recs))
	}
	for i := range recs {
		if !bytes.Equal(got[i].k, recs[i].k) || !bytes.Equal(got[i].v, recs[i].v) {
			t.Fatalf("record %d differs", i)
		}
	}
}

func TestSlotFileEmpty(t *testing.T) {
	data, sum := writeSlot(t, backup.SlotHeader{Slot: 0, Slots: 1}, nil)
	if sum.Keys != 0 || sum.Bytes != 0 || sum.Size != int64(len(data)) {
		t.Fatalf("summary %+v", sum)
	}
	hdr, recs, err := readSlot(data, "x")
	if err != nil || len(recs) != 0 || hdr.Slots != 1 {
		t.Fatalf("read: %+v %d records, %v", hdr, len(recs), err)
	}
}

func TestSlotWriterRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  backup.SlotHeader
		k, v []byte
		want string
	}{
		{"empty key", testHeader, nil, nil, "key of 0 bytes"},
		{"long key", testHeader, make([]byte, backup.MaxKeySize+1), nil, "key of 4097 bytes"},
		{"big value", testHeader, []byte("k"), make([]byte, backup.MaxValueSize+1), "value of 33554433 bytes"},
		{"slot out of range", backup.SlotHeader{Slot: 16, Slots: 16}, []byte("k"), nil, "slot 16 out of range 0..15"},
		{"no slots", backup.SlotHeader{}, []byte("k"), nil, "slot count 0 out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := backup.NewSlotWriter(io.Discard, tc.hdr)
			if err := w.Add(tc.k, tc.v); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("add: %v, want %q", err, tc.want)
			}
			if _, err := w.Close(); err == nil {
				t.Fatal("close after a refused record: no error")
			}
		})
	}
}

// layout of the test file written by damageFile: offsets of its parts.
type layout struct {
	data    []byte
	records []int // start of each record
	trailer int
}

func damageFile(t *testing.T) layout {
	recs := []record{{[]byte("alpha"), []byte("one")}, {[]byte("beta"), []byte("two")}, {[]byte("gamma"), []byte("three")}}
	data, _ := writeSlot(t, testHeader, recs)
	l := layout{data: data}
	off := 8 + 2 + 4 + 4 + 8 + 8 + 2 + len(testHeader.Group) + 4
	for _, r := range recs {
		l.records = append(l.records, off)
		off += 1 + 8 + len(r.k) + len(r.v) + 4
	}
	l.trailer = off
	if off+1+16+4 != len(data) {
		t.Fatalf("the file is %d bytes, the layout says %d", len(data), off+1+16+4)
	}
	return l
}

// fixFileCRC recomputes the trailer's whole-file CRC after an edit.
func fixFileCRC(d []byte) {
	n := len(d) - 4
	binary.BigEndian.PutUint32(d[n:], crc32.Checksum(d[:n], crc32.MakeTable(crc32.Castagnoli)))
}

func TestSlotFileDamage(t *testing.T) {
	l := damageFile(t)
	for _, tc := range []struct {
		name   string
		damage func(d []byte) []byte
		offset int
		reason string
	}{
		{"wrong magic", func(d []byte) []byte { d[1] = 'X'; return d }, 0, "not a ThunderYurts slot file (bad magic)"},
		{"wrong version", func(d []byte) []byte { d[9] = 2; return d }, 8, "format version 2, this build reads version 1"},
		{"flipped header byte", func(d []byte) []byte { d[20] ^= 1; return d }, 0, "header checksum mismatch"},
		{"flipped value byte", func(d []byte) []byte { d[l.records[1]+13] ^= 0x10; return d }, l.records[1], "record 2: checksum mismatch"},
		{"flipped record CRC", func(d []byte) []byte { d[l.records[2]-1] ^= 0x80; return d }, l.records[1], "record 2: checksum mismatch"},
		{"zero key length", func(d []byte) []byte { copy(d[l.records[0]+1:], []byte{0, 0, 0, 0}); return d }, l.records[0], "record 1: key length 0 out of range 1..4096"},
		{"huge value length", func(d []byte) []byte { copy(d[l.records[0]+5:], []byte{0x7f, 0, 0, 0}); return d }, l.records[0], "record 1: value length 2130706432 over the limit"},
		{"unknown tag", func(d []byte) []byte { d[l.records[2]] = 'X'; return d }, l.records[2], "record 3: unknown tag 0x58"},
		{"truncated in a record", func(d []byte) []byte { return d[:l.records[2]+7] }, l.records[2] + 7, "truncated in record 3"},
		{"truncated between records", func(d []byte) []byte { return d[:l.records[2]] }, l.records[2], "truncated after 2 records: no trailer"},
		{"no trailer", func(d []byte) []byte { return d[:l.trailer] }, l.trailer, "truncated after 3 records: no trailer"},
		{"truncated trailer", func(d []byte) []byte { return d[:len(d)-1] }, len(l.data) - 1, "truncated in the trailer"},
		{"truncated header", func(d []byte) []byte { return d[:20] }, 20, "truncated in the header"},
		{"empty file", func(d []byte) []byte { return nil }, 0, "truncated in the header"},
		{"flipped file CRC", func(d []byte) []byte { d[len(d)-2] ^= 4; return d }, l.trailer, "trailer: file checksum mismatch"},
		{"record removed", func(d []byte) []byte {
			return append(d[:l.records[1]:l.records[1]], d[l.records[2]:]...)
		}, l.trailer - (l.records[2] - l.records[1]), "trailer: file checksum mismatch"},
		{"trailer count edited", func(d []byte) []byte { d[l.trailer+8] = 4; fixFileCRC(d); return d }, l.trailer, "trailer: 4 records, the file has 3"},
		{"trailer bytes edited", func(d []byte) []byte { d[l.trailer+16] ^= 1; fixFileCRC(d); return d }, l.trailer, "trailer: 24 bytes of keys and values, the file has 25"},
		{"data after the trailer", func(d []byte) []byte { return append(d, 0) }, len(l.data), "data after the trailer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.damage(bytes.Clone(l.data))
			_, _, err := readSlot(d, "20261202T143000Z-a1b2c3/slot-0007.tyb")
			want := fmt.Sprintf("backup file 20261202T143000Z-a1b2c3/slot-0007.tyb: offset %d: %s", tc.offset, tc.reason)
			if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got  %v\nwant %s", err, want)
			}
			var ce *backup.CorruptError
			if !errors.Is(err, backup.ErrCorrupt) || !errors.As(err, &ce) {
				t.Fatalf("%v is not a CorruptError", err)
			}
		})
	}
}

// Every single flipped bit and every truncation of a file is caught.
func TestSlotFileEveryDamageCaught(t *testing.T) {
	l := damageFile(t)
	for i := range l.data {
		for bit := range 8 {
			d := bytes.Clone(l.data)
			d[i] ^= 1 << bit
			if _, _, err := readSlot(d, "f"); !errors.Is(err, backup.ErrCorrupt) {
				t.Fatalf("bit %d of byte %d flipped: %v, want ErrCorrupt", bit, i, err)
			}
		}
	}
	for n := range len(l.data) {
		if _, _, err := readSlot(l.data[:n], "f"); !errors.Is(err, backup.ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: %v, want ErrCorrupt", n, err)
		}
	}
}

type failAfter struct {
	r io.Reader
	n int
}

var errDisk = errors.New("disk on fire")

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errDisk
	}
	p = p[:min(len(p), f.n)]
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// A failing read is reported as such, not as damage.
func TestSlotReaderReadError(t *testing.T) {
	l := damageFile(t)
	r, err := backup.NewSlotReader(&failAfter{bytes.NewReader(l.data), l.records[1] + 3}, "f")
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, _, err = r.Next()
	}
	if !errors.Is(err, errDisk) || errors.Is(err, backup.ErrCorrupt) {
		t.Fatalf("got %v, want the read error and not ErrCorrupt", err)
	}
}
