package datastore

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Write-ahead-log record layout: length(4) | crc32c(4) | payload, where the
// payload is seq(8) | epoch(8) | type(1) | slot(2) | key length(4) | key |
// value and length counts the payload only.
const (
	recHeader  = 8
	recFixed   = 8 + 8 + 1 + 2 + 4
	maxPayload = recFixed + maxMaxKeySize + maxMaxValueSize

	recPut    = 1
	recDelete = 2
	// recEpoch marks that the epoch in the record starts at seq+1. It uses
	// no sequence number of its own: ReadLog and ApplyLog see only data.
	recEpoch = 3

	defaultSegmentSize = 64 << 20
	walDir             = "wal"
	segmentExt         = ".log"
)

// entry is one data record of the log as kept in memory. key and value are
// never modified once the entry is built, so they are shared freely.
type entry struct {
	seq   uint64
	epoch uint64
	slot  uint16
	del   bool
	key   []byte
	value []byte
	hash  uint64 // overlay hash of slot and key
	prev  uint64 // seq of the previous unapplied entry with the same hash; 0: none
}

// entryOverhead approximates the memory an entry costs besides its key and
// value (the entry itself, its overlay version and map slot).
const entryOverhead = 160

func (e *entry) cost() int64 { return int64(len(e.key) + len(e.value) + entryOverhead) }

func (e *entry) logEntry() LogEntry {
	return LogEntry{Seq: e.seq, Epoch: e.epoch, Slot: int(e.slot), Key: e.key, Value: e.value, Delete: e.del}
}

// record is one decoded WAL record; key and value alias the read buffer.
type record struct {
	typ   byte
	seq   uint64
	epoch uint64
	slot  uint16
	key   []byte
	value []byte
}

func appendRecord(dst []byte, typ byte, seq, epoch uint64, slot uint16, key, value []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(recFixed+len(key)+len(value)))
	crcAt := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	start := len(dst)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = binary.BigEndian.AppendUint64(dst, epoch)
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, slot)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(key)))
	dst = append(dst, key...)
	dst = append(dst, value...)
	binary.BigEndian.PutUint32(dst[crcAt:], crc32.Checksum(dst[start:], castagnoli))
	return dst
}

// decodePayload checks and decodes a payload whose checksum is want.
func decodePayload(p []byte, want uint32) (record, bool) {
	if len(p) < recFixed || crc32.Checksum(p, castagnoli) != want {
		return record{}, false
	}
	r := record{
		seq:   binary.BigEndian.Uint64(p),
		epoch: binary.BigEndian.Uint64(p[8:]),
		typ:   p[16],
		slot:  binary.BigEndian.Uint16(p[17:]),
	}
	keyLen := uint64(binary.BigEndian.Uint32(p[19:]))
	if keyLen > uint64(len(p)-recFixed) || r.typ < recPut || r.typ > recEpoch {
		return record{}, false
	}
	r.key = p[recFixed : recFixed+keyLen]
	r.value = p[recFixed+keyLen:]
	return r, true
}

// segment is one WAL file. first comes from its name: the seq of the first
// data record it was opened for; it may begin with epoch markers of seq
// first-1. last is the highest seq of a record in it (first-1 if none).
type segment struct {
	first uint64
	last  uint64
	size  int64
	path  string
}

func segmentPath(dir string, first uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", first, segmentExt))
}

// listSegments returns the segments in dir ordered by first seq, without
// their last seq and size.
func listSegments(dir string) ([]segment, error) {
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []segment
	for _, d := range names {
		name := d.Name()
		if !strings.HasSuffix(name, segmentExt) {
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(name, segmentExt), 10, 64)
		if err != nil || first == 0 {
			return nil, fmt.Errorf("unexpected file %s in the log directory: %w", filepath.Join(dir, name), ErrFormat)
		}
		segs = append(segs, segment{first: first, path: filepath.Join(dir, name)})
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmp.Compare(a.first, b.first) })
	return segs, nil
}

// errTorn reports a damaged record; segmentReader.next returns it wrapped
// with ErrCorrupt, and Open decides whether the damage is a torn tail.
type tornError struct {
	path   string
	offset int64
	why    string
	// extendsPastEOF is true when the record's header claims more bytes
	// than the file holds: the write was cut off by a crash.
	extendsPastEOF bool
	// atEOF is true when the damaged record ends exactly at the end of the
	// file, or everything from it to the end is zero bytes.
	atEOF bool
}

func (e *tornError) Error() string {
	return fmt.Sprintf("log %s offset %d: %s", e.path, e.offset, e.why)
}

func (e *tornError) Unwrap() error { return ErrCorrupt }

// segmentReader reads records from one segment file in order.
type segmentReader struct {
	path string
	f    *os.File
	r    *bufio.Reader
	size int64
	off  int64 // offset of the next record
	buf  []byte
}

// openSegment opens a segment for reading its records. size is how many
// bytes of records it holds (the rest are the zeros written ahead of the
// log); a negative size reads up to the end of the file, as recovery does.
func openSegment(path string, size int64) (*segmentReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	if size < 0 || size > fi.Size() {
		size = fi.Size()
	}
	return &segmentReader{path: path, f: f, r: bufio.NewReaderSize(io.LimitReader(f, size), 1<<20), size: size}, nil
}

func (sr *segmentReader) close() { _ = sr.f.Close() }

// next returns the next record, io.EOF at a clean end of the file, or a
// *tornError. The record's key and value are valid until the next call.
func (sr *segmentReader) next() (record, error) {
	var hdr [recHeader]byte
	n, err := io.ReadFull(sr.r, hdr[:])
	if err == io.EOF {
		return record{}, io.EOF
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return record{}, sr.damaged(fmt.Sprintf("header cut off after %d bytes", n), true)
	}
	if err != nil {
		return record{}, fmt.Errorf("log %s offset %d: %w", sr.path, sr.off, err)
	}
	length := int64(binary.BigEndian.Uint32(hdr[:]))
	if hdr == ([recHeader]byte{}) && sr.zerosFrom(sr.off) {
		// The zeros written ahead of the log: its clean end.
		return record{}, io.EOF
	}
	if length < recFixed || length > maxPayload {
		return record{}, sr.damaged(fmt.Sprintf("record length %d", length), false)
	}
	if sr.off+recHeader+length > sr.size {
		return record{}, sr.damaged(fmt.Sprintf("record of %d bytes cut off by the end of the file", length), true)
	}
	if int64(cap(sr.buf)) < length {
		sr.buf = make([]byte, length)
	}
	p := sr.buf[:length]
	if _, err := io.ReadFull(sr.r, p); err != nil {
		return record{}, fmt.Errorf("log %s offset %d: %w", sr.path, sr.off, err)
	}
	rec, ok := decodePayload(p, binary.BigEndian.Uint32(hdr[4:]))
	if !ok {
		e := sr.damaged("checksum mismatch", false)
		// Nothing but zeros after it: the last write was torn.
		e.atEOF = e.atEOF || sr.zerosFrom(sr.off+recHeader+length)
		return record{}, e
	}
	sr.off += recHeader + length
	return rec, nil
}

// damaged builds the error for a bad record at sr.off, checking whether
// only zero bytes follow it (a crash can leave a zero-filled end).
func (sr *segmentReader) damaged(why string, pastEOF bool) *tornError {
	e := &tornError{path: sr.path, offset: sr.off, why: why, extendsPastEOF: pastEOF}
	if !pastEOF {
		e.atEOF = sr.zerosFrom(sr.off)
	}
	return e
}

func (sr *segmentReader) zerosFrom(off int64) bool {
	buf := make([]byte, 64<<10)
	for off < sr.size {
		n, err := sr.f.ReadAt(buf[:min(int64(len(buf)), sr.size-off)], off)
		for _, b := range buf[:n] {
			if b != 0 {
				return false
			}
		}
		if err != nil && n == 0 {
			return false
		}
		off += int64(n)
	}
	return true
}

// syncDir makes a file creation, rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
