package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sync"
)

// The slot file format, version 1 (docs/backups.md has the full layout).
// All integers are big-endian.
//
//	header  magic "\x89TYSLOT\n", version u16, slot u32, slots u32,
//	        epoch u64, sequence u64, group length u16, group, CRC32C u32
//	record  'R', key length u32, value length u32, key, value, CRC32C u32
//	trailer 'E', records u64, bytes u64, CRC32C u32 of every byte before it
const (
	// FormatVersion is the version of the slot file format this build
	// writes; it reads only this one.
	FormatVersion = 1
	// ManifestVersion is the version of the manifest format this build
	// writes. Version 2 records each slot's cut in its entry (a group may
	// be copied more than once when slots move during a backup); this
	// build reads versions 1 and 2.
	ManifestVersion = 2
	// SlotFileExt ends every slot file's name.
	SlotFileExt = ".tyb"
	// MaxKeySize and MaxValueSize bound a record (keys are at least one
	// byte): a reader holds one record in memory.
	MaxKeySize   = 4096
	MaxValueSize = 32 << 20
	// maxGroupName bounds the group name in a header.
	maxGroupName = 1024
)

var magic = [8]byte{0x89, 'T', 'Y', 'S', 'L', 'O', 'T', '\n'}

const (
	tagRecord  = 'R'
	tagTrailer = 'E'
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SlotHeader opens a slot file: which slot of how many, and the point in
// the owning group's log the copy was taken at.
type SlotHeader struct {
	Slot     int
	Slots    int // the cluster's slot count
	Group    string
	Epoch    uint64
	Sequence uint64
}

func (h SlotHeader) check() error {
	switch {
	case h.Slots < 1 || h.Slots > 1<<31-1:
		return fmt.Errorf("slot count %d out of range", h.Slots)
	case h.Slot < 0 || h.Slot >= h.Slots:
		return fmt.Errorf("slot %d out of range 0..%d", h.Slot, h.Slots-1)
	case len(h.Group) > maxGroupName:
		return fmt.Errorf("group name of %d bytes (at most %d)", len(h.Group), maxGroupName)
	}
	return nil
}

// SlotFileName is the file name of a slot in a backup: "slot-0017.tyb".
func SlotFileName(slot int) string {
	return fmt.Sprintf("slot-%04d%s", slot, SlotFileExt)
}

// SlotSummary describes a finished slot file.
type SlotSummary struct {
	Keys   int64  // records
	Bytes  int64  // key and value bytes
	Size   int64  // file bytes
	SHA256 string // of the whole file, lower-case hex
}

// SlotWriter streams a slot file to w: NewSlotWriter, Add for every
// record, then Close. Memory stays bounded by a small buffer. Not safe
// for concurrent use.
type SlotWriter struct {
	w     *bufio.Writer
	hdr   SlotHeader
	begun bool
	err   error // sticky: the first error ends the file
	file  uint32
	sha   hash.Hash
	sum   SlotSummary
	scr   [32]byte
}

// slotBuffers are the write buffers of slot files, reused from one file to
// the next: a backup writes a file per slot.
var slotBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// NewSlotWriter returns a writer of hdr's slot file to w. The header is
// checked and written with the first Add or with Close.
func NewSlotWriter(w io.Writer, hdr SlotHeader) *SlotWriter {
	bw := slotBuffers.Get().(*bufio.Writer)
	bw.Reset(w)
	return &SlotWriter{w: bw, hdr: hdr, sha: sha256.New()}
}

// emit writes p to the file, counting it into the file's CRC when crc is
// set (every byte but the trailer's own CRC).
func (sw *SlotWriter) emit(p []byte, crc bool) {
	if sw.err != nil {
		return
	}
	if crc {
		sw.file = crc32.Update(sw.file, castagnoli, p)
	}
	sw.sha.Write(p)
	sw.sum.Size += int64(len(p))
	_, sw.err = sw.w.Write(p)
}

func (sw *SlotWriter) begin() error {
	if sw.begun || sw.err != nil {
		return sw.err
	}
	sw.begun = true
	if err := sw.hdr.check(); err != nil {
		sw.err = fmt.Errorf("slot file header: %w", err)
		return sw.err
	}
	h := make([]byte, 0, 40+len(sw.hdr.Group))
	h = append(h, magic[:]...)
	h = binary.BigEndian.AppendUint16(h, FormatVersion)
	h = binary.BigEndian.AppendUint32(h, uint32(sw.hdr.Slot))
	h = binary.BigEndian.AppendUint32(h, uint32(sw.hdr.Slots))
	h = binary.BigEndian.AppendUint64(h, sw.hdr.Epoch)
	h = binary.BigEndian.AppendUint64(h, sw.hdr.Sequence)
	h = binary.BigEndian.AppendUint16(h, uint16(len(sw.hdr.Group)))
	h = append(h, sw.hdr.Group...)
	h = binary.BigEndian.AppendUint32(h, crc32.Checksum(h, castagnoli))
	sw.emit(h, true)
	return sw.err
}

// Add appends a record. The key is 1 to MaxKeySize bytes, the value at
// most MaxValueSize; a record out of bounds is refused and ends the file.
func (sw *SlotWriter) Add(key, value []byte) error {
	if err := sw.begin(); err != nil {
		return err
	}
	if len(key) < 1 || len(key) > MaxKeySize {
		sw.err = fmt.Errorf("slot %d: key of %d bytes (1 to %d)", sw.hdr.Slot, len(key), MaxKeySize)
		return sw.err
	}
	if len(value) > MaxValueSize {
		sw.err = fmt.Errorf("slot %d: key %q: value of %d bytes (at most %d)", sw.hdr.Slot, shortKey(key), len(value), MaxValueSize)
		return sw.err
	}
	head := sw.scr[:0]
	head = append(head, tagRecord)
	head = binary.BigEndian.AppendUint32(head, uint32(len(key)))
	head = binary.BigEndian.AppendUint32(head, uint32(len(value)))
	crc := crc32.Update(crc32.Update(crc32.Checksum(head, castagnoli), castagnoli, key), castagnoli, value)
	sw.emit(head, true)
	sw.emit(key, true)
	sw.emit(value, true)
	sw.emit(binary.BigEndian.AppendUint32(sw.scr[:0], crc), true)
	sw.sum.Keys++
	sw.sum.Bytes += int64(len(key) + len(value))
	return sw.err
}

// Close writes the trailer and flushes; it does not close the underlying
// writer. It returns what the file holds and its SHA-256.
func (sw *SlotWriter) Close() (SlotSummary, error) {
	if err := sw.begin(); err != nil {
		return SlotSummary{}, err
	}
	t := append(sw.scr[:0], tagTrailer)
	t = binary.BigEndian.AppendUint64(t, uint64(sw.sum.Keys))
	t = binary.BigEndian.AppendUint64(t, uint64(sw.sum.Bytes))
	sw.emit(t, true)
	sw.emit(binary.BigEndian.AppendUint32(sw.scr[:0], sw.file), false)
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	if sw.err != nil {
		return SlotSummary{}, sw.err
	}
	sw.w.Reset(nil)
	slotBuffers.Put(sw.w)
	sw.w = nil
	sw.err = errors.New("slot file closed")
	sw.sum.SHA256 = hex.EncodeToString(sw.sha.Sum(nil))
	return sw.sum, nil
}

// ErrCorrupt is wrapped by every error about a damaged backup: a slot file
// whose bytes fail a check, or a backup whose files do not match its
// manifest.
var ErrCorrupt = errors.New("backup is corrupt")

// CorruptError is a damaged backup file: what is wrong and where.
type CorruptError struct {
	File   string // the file's name: "<backup ID>/slot-0017.tyb" in a backup
	Offset int64  // where the damaged part starts (for truncation: the end); -1 for the whole file
	Reason string
}

func (e *CorruptError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("backup file %s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("backup file %s: offset %d: %s", e.File, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// SlotReader streams a slot file's records, checking every checksum: the
// header's on NewSlotReader, each record's on Next, and the trailer's
// counts and whole-file CRC before Next returns io.EOF. Memory is bounded
// by one record.
type SlotReader struct {
	r     *bufio.Reader
	name  string
	hdr   SlotHeader
	off   int64  // bytes read so far
	file  uint32 // CRC32C of the bytes read so far
	keys  int64
	bytes int64
	buf   []byte
	err   error // sticky
	scr   [64]byte
}

// NewSlotReader reads and checks the header of the slot file r; name is
// for errors ("backup file <name>: offset N: …").
func NewSlotReader(r io.Reader, name string) (*SlotReader, error) {
	sr := &SlotReader{r: bufio.NewReaderSize(r, 64<<10), name: name}
	if err := sr.readHeader(); err != nil {
		return nil, err
	}
	return sr, nil
}

// Header is the file's header.
func (sr *SlotReader) Header() SlotHeader { return sr.hdr }

// Summary is what the file held (Size and SHA256 unset); final once Next
// has returned io.EOF.
func (sr *SlotReader) Summary() SlotSummary {
	return SlotSummary{Keys: sr.keys, Bytes: sr.bytes}
}

func (sr *SlotReader) corrupt(at int64, format string, args ...any) error {
	return &CorruptError{File: sr.name, Offset: at, Reason: fmt.Sprintf(format, args...)}
}

// read fills p from the file, counting it into the file CRC when crc is
// set. what names the part being read, for a truncation error.
func (sr *SlotReader) read(p []byte, crc bool, what part) error {
	n, err := io.ReadFull(sr.r, p)
	if crc {
		sr.file = crc32.Update(sr.file, castagnoli, p[:n])
	}
	sr.off += int64(n)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return sr.corrupt(sr.off, "truncated in %s", what)
	case err != nil:
		return fmt.Errorf("backup file %s: offset %d: %w", sr.name, sr.off, err)
	}
	return nil
}

func (sr *SlotReader) readHeader() error {
	h := sr.scr[:8+2+4+4+8+8+2]
	if err := sr.read(h[:8], true, partHeader); err != nil {
		return err
	}
	if !bytes.Equal(h[:8], magic[:]) {
		return sr.corrupt(0, "not a ThunderYurts slot file (bad magic)")
	}
	if err := sr.read(h[8:10], true, partHeader); err != nil {
		return err
	}
	if v := binary.BigEndian.Uint16(h[8:10]); v != FormatVersion {
		return sr.corrupt(8, "format version %d, this build reads version %d", v, FormatVersion)
	}
	if err := sr.read(h[10:], true, partHeader); err != nil {
		return err
	}
	glen := int(binary.BigEndian.Uint16(h[34:36]))
	if glen > maxGroupName {
		return sr.corrupt(34, "group name of %d bytes (at most %d)", glen, maxGroupName)
	}
	rest := make([]byte, glen+4)
	if err := sr.read(rest, true, partHeader); err != nil {
		return err
	}
	crc := crc32.Update(crc32.Checksum(h, castagnoli), castagnoli, rest[:glen])
	if crc != binary.BigEndian.Uint32(rest[glen:]) {
		return sr.corrupt(0, "header checksum mismatch")
	}
	sr.hdr = SlotHeader{
		Slot:     int(binary.BigEndian.Uint32(h[10:14])),
		Slots:    int(binary.BigEndian.Uint32(h[14:18])),
		Epoch:    binary.BigEndian.Uint64(h[18:26]),
		Sequence: binary.BigEndian.Uint64(h[26:34]),
		Group:    string(rest[:glen]),
	}
	if err := sr.hdr.check(); err != nil {
		return sr.corrupt(10, "header: %v", err)
	}
	return nil
}

// Next returns the next record; its key and value stay valid until the
// next call. After the last record it checks the trailer and returns
// io.EOF; on damage it returns a *CorruptError. Errors are sticky.
func (sr *SlotReader) Next() (key, value []byte, err error) {
	if sr.err != nil {
		return nil, nil, sr.err
	}
	key, value, sr.err = sr.next()
	return key, value, sr.err
}

func (sr *SlotReader) next() (key, value []byte, err error) {
	start := sr.off
	rec := sr.keys + 1
	what := part(rec)
	tag := sr.scr[:1]
	if err := sr.read(tag, true, what); err != nil {
		if sr.off == start && errors.Is(err, ErrCorrupt) { // a clean cut between records
			return nil, nil, sr.corrupt(start, "truncated after %d records: no trailer", sr.keys)
		}
		return nil, nil, err
	}
	switch tag[0] {
	case tagTrailer:
		return nil, nil, sr.readTrailer(start)
	case tagRecord:
	default:
		return nil, nil, sr.corrupt(start, "%s: unknown tag 0x%02x", what, tag[0])
	}
	lens := sr.scr[1:9]
	if err := sr.read(lens, true, what); err != nil {
		return nil, nil, err
	}
	klen, vlen := binary.BigEndian.Uint32(lens[:4]), binary.BigEndian.Uint32(lens[4:])
	if klen < 1 || klen > MaxKeySize {
		return nil, nil, sr.corrupt(start, "%s: key length %d out of range 1..%d", what, klen, MaxKeySize)
	}
	if vlen > MaxValueSize {
		return nil, nil, sr.corrupt(start, "%s: value length %d over the limit of %d", what, vlen, MaxValueSize)
	}
	n := int(klen + vlen)
	if cap(sr.buf) < n+4 {
		sr.buf = make([]byte, n+4)
	}
	body := sr.buf[:n+4]
	if err := sr.read(body, true, what); err != nil {
		return nil, nil, err
	}
	crc := crc32.Update(crc32.Checksum(sr.scr[:9], castagnoli), castagnoli, body[:n])
	if crc != binary.BigEndian.Uint32(body[n:]) {
		return nil, nil, sr.corrupt(start, "%s: checksum mismatch", what)
	}
	sr.keys++
	sr.bytes += int64(n)
	return body[:klen], body[klen:n], nil
}

func (sr *SlotReader) readTrailer(start int64) error {
	t := sr.scr[:16]
	if err := sr.read(t, true, partTrailer); err != nil {
		return err
	}
	want := sr.file
	c := sr.scr[16:20]
	if err := sr.read(c, false, partTrailer); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(c) != want {
		return sr.corrupt(start, "trailer: file checksum mismatch")
	}
	if keys := binary.BigEndian.Uint64(t[:8]); keys != uint64(sr.keys) {
		return sr.corrupt(start, "trailer: %d records, the file has %d", keys, sr.keys)
	}
	if b := binary.BigEndian.Uint64(t[8:]); b != uint64(sr.bytes) {
		return sr.corrupt(start, "trailer: %d bytes of keys and values, the file has %d", b, sr.bytes)
	}
	if _, err := sr.r.ReadByte(); err != io.EOF {
		if err != nil {
			return fmt.Errorf("backup file %s: offset %d: %w", sr.name, sr.off, err)
		}
		return sr.corrupt(sr.off, "data after the trailer")
	}
	return io.EOF
}

// part names a part of a slot file in an error, formatted only then: the
// header, the trailer, or the record of that number (from 1).
type part int64

const (
	partHeader  part = -1
	partTrailer part = -2
)

func (p part) String() string {
	switch p {
	case partHeader:
		return "the header"
	case partTrailer:
		return "the trailer"
	}
	return fmt.Sprintf("record %d", int64(p))
}

// shortKey quotes at most 64 bytes of a key for an error.
func shortKey(k []byte) string {
	if len(k) > 64 {
		return string(k[:64]) + "…"
	}
	return string(k)
}
