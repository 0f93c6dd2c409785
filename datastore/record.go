package datastore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// Write-ahead-log record format, version 2 (see doc.go):
//
//	tag 0xD2 (1) | length (4) | crc32c of the payload (4) | crc32c of the 9 bytes before it (4) | payload
//
// The payload is seq(8) | epoch(8) | type(1) | slot(2) | key length(4) |
// key | value and length counts the payload only. The header checksum
// covers the length, so a damaged length is caught before it is believed.
// A tagged put or delete (types 5 and 6: a write with a client's Tag) has
// the tag after the key length: ... | key length(4) | client id(8) |
// client seq(8) | key | value; untagged writes keep types 1 and 2 and their
// layout, so logs written before tags existed read as before. A drop (type
// 7) has the slot and no key or value; a mark (type 8) has slot 0, the
// mark's name as key and its value.
// Every commit (the records of one write) ends with a commit record whose
// value is the commit's byte count (8) | crc32c of those bytes (4) | seq
// of its first data record, 0 if none (8) | synced (8) | "TYCM"; its seq is
// the log's last seq after the commit. synced is how far the segment had
// been fdatasynced when the commit was written: the committer writes the
// next commit while the previous one's fdatasync runs, so a crash can keep
// a commit and lose the one before it. Bytes below a valid commit record's
// synced offset, and its own commit, were possibly acknowledged; damage
// that no later commit record vouches for that way is a torn tail, dropped
// with everything after it. Format version 4 wrote the value without
// synced (24 bytes): such a record vouches for everything before it, as
// each of those commits was written only after the previous one's
// fdatasync.
//
// Version 1 records (stores of format version 2) are length (4) | crc32c
// of the payload (4) | payload, without commit records. Their first byte is
// at most 0x40 (the length is at most maxPayload), so the tag tells the
// versions apart; a segment may hold v1 records followed by v2 records, never
// the other way round.
const (
	recTag      = 0xD2
	recHeader   = 1 + 4 + 4 + 4
	recHeaderV1 = 4 + 4
	maxV1Lead   = byte((maxPayload - recTagLen) >> 24)
	recFixed    = 8 + 8 + 1 + 2 + 4
	recTagLen   = 8 + 8 // client id and client seq of a tagged put or delete
	maxPayload  = recFixed + recTagLen + maxMaxKeySize + maxMaxValueSize

	recPut    = 1
	recDelete = 2
	// recEpoch marks that the epoch in the record starts at seq+1. It uses
	// no sequence number of its own: ReadLog and ApplyLog see only data.
	recEpoch = 3
	// recCommit closes a commit; it uses no sequence number either.
	recCommit = 4
	// recPutTagged and recDeleteTagged are recPut and recDelete with the
	// writer's Tag.
	recPutTagged    = 5
	recDeleteTagged = 6
	// recDrop removes every key of its slot; recMark stores a mark (see
	// Mutation).
	recDrop = 7
	recMark = 8

	commitValue    = 8 + 4 + 8 + 8 + 4
	commitRecord   = recHeader + recFixed + commitValue
	commitValueV4  = 8 + 4 + 8 + 4 // without synced
	commitRecordV4 = recHeader + recFixed + commitValueV4
	commitMagic    = "TYCM"

	// sectorSize is the unit in which a crash tears a write: a sector
	// holds either what was written or what was there before.
	sectorSize = 512
)

// record is one decoded WAL record; key and value alias the read buffer.
type record struct {
	typ   byte
	seq   uint64
	epoch uint64
	slot  uint16
	tag   Tag // tagged puts and deletes only
	key   []byte
	value []byte
}

// isData reports whether rec is an entry of the log (a put, a delete, a
// drop or a mark), not an epoch marker or a commit record.
func (rec *record) isData() bool {
	switch rec.typ {
	case recPut, recDelete, recPutTagged, recDeleteTagged, recDrop, recMark:
		return true
	}
	return false
}

func (rec *record) isDelete() bool { return rec.typ == recDelete || rec.typ == recDeleteTagged }

// tagged reports whether records of type typ carry a Tag.
func tagged(typ byte) bool { return typ == recPutTagged || typ == recDeleteTagged }

// entry copies the data record rec into an entry of its own.
func (rec *record) entry() entry {
	e := newEntry(rec.slot, rec.isDelete(), rec.key, rec.value)
	e.seq, e.epoch, e.tag = rec.seq, rec.epoch, rec.tag
	e.drop, e.mark = rec.typ == recDrop, rec.typ == recMark
	return e
}

// appendEntryRecord appends e's record to dst: a tagged type when e has a
// tag, so untagged writes keep the layout older builds read.
func appendEntryRecord(dst []byte, e *entry) []byte {
	typ := byte(recPut)
	switch {
	case e.drop:
		typ = recDrop
	case e.mark:
		typ = recMark
	case e.del && e.tag.IsZero():
		typ = recDelete
	case e.del:
		typ = recDeleteTagged
	case !e.tag.IsZero():
		typ = recPutTagged
	}
	return appendTaggedRecord(dst, typ, e.seq, e.epoch, e.slot, e.tag, e.key, e.value)
}

// appendRecord appends one untagged v2 record to dst.
func appendRecord(dst []byte, typ byte, seq, epoch uint64, slot uint16, key, value []byte) []byte {
	return appendTaggedRecord(dst, typ, seq, epoch, slot, Tag{}, key, value)
}

// appendTaggedRecord appends one v2 record to dst; tag is written only for
// the tagged types.
func appendTaggedRecord(dst []byte, typ byte, seq, epoch uint64, slot uint16, tag Tag, key, value []byte) []byte {
	at := len(dst)
	dst = append(dst, recTag, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	start := len(dst)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = binary.BigEndian.AppendUint64(dst, epoch)
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, slot)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(key)))
	if tagged(typ) {
		dst = binary.BigEndian.AppendUint64(dst, tag.Client)
		dst = binary.BigEndian.AppendUint64(dst, tag.Seq)
	}
	dst = append(dst, key...)
	dst = append(dst, value...)
	binary.BigEndian.PutUint32(dst[at+1:], uint32(len(dst)-start))
	binary.BigEndian.PutUint32(dst[at+5:], crc32.Checksum(dst[start:], castagnoli))
	binary.BigEndian.PutUint32(dst[at+9:], crc32.Checksum(dst[at:at+9], castagnoli))
	return dst
}

// commitMark describes one commit: its bytes before the commit record,
// their checksum, its first and last data seqs (first 0: no data) and how
// far its segment was fdatasynced when it was written (synced; a format
// version 4 record says nothing, read as the commit's own start).
type commitMark struct {
	bytes  int64
	crc    uint32
	first  uint64
	last   uint64
	synced int64
}

// appendCommit appends the commit record that closes the commit m.
func appendCommit(dst []byte, m commitMark) []byte {
	var v [commitValue]byte
	binary.BigEndian.PutUint64(v[:], uint64(m.bytes))
	binary.BigEndian.PutUint32(v[8:], m.crc)
	binary.BigEndian.PutUint64(v[12:], m.first)
	binary.BigEndian.PutUint64(v[20:], uint64(m.synced))
	copy(v[28:], commitMagic)
	return appendRecord(dst, recCommit, m.last, 0, 0, nil, v[:])
}

// decodeCommit reads the mark of the commit record rec, which ends at
// offset end of its segment.
func decodeCommit(rec record, end int64) (commitMark, bool) {
	v := rec.value
	if len(rec.key) != 0 || len(v) != commitValue && len(v) != commitValueV4 ||
		string(v[len(v)-4:]) != commitMagic {
		return commitMark{}, false
	}
	m := commitMark{
		bytes: int64(binary.BigEndian.Uint64(v)),
		crc:   binary.BigEndian.Uint32(v[8:]),
		first: binary.BigEndian.Uint64(v[12:]),
		last:  rec.seq,
	}
	recLen := int64(commitRecord)
	if len(v) == commitValueV4 {
		recLen = commitRecordV4
	}
	m.synced = end - recLen - m.bytes // a version 4 commit's start
	if len(v) == commitValue {
		// Nothing past the record itself can have been synced before it
		// was written.
		m.synced = int64(binary.BigEndian.Uint64(v[20:]))
		if m.synced < 0 || m.synced > end-recLen {
			return commitMark{}, false
		}
	}
	return m, true
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
	if r.typ < recPut || r.typ > recMark {
		return record{}, false
	}
	fixed := uint64(recFixed)
	if tagged(r.typ) {
		if len(p) < recFixed+recTagLen {
			return record{}, false
		}
		r.tag = Tag{Client: binary.BigEndian.Uint64(p[recFixed:]), Seq: binary.BigEndian.Uint64(p[recFixed+8:])}
		fixed += recTagLen
	}
	if keyLen > uint64(len(p))-fixed {
		return record{}, false
	}
	r.key = p[fixed : fixed+keyLen]
	r.value = p[fixed+keyLen:]
	return r, true
}

// commitAt decodes the commit record that b starts with; at is b's offset
// in its segment. isCommit says b starts with a record of the commit type
// whose checksums match; ok that its mark is valid too.
func commitAt(b []byte, at int64) (m commitMark, isCommit, ok bool) {
	if len(b) < recHeader || b[0] != recTag ||
		crc32.Checksum(b[:9], castagnoli) != binary.BigEndian.Uint32(b[9:]) {
		return commitMark{}, false, false
	}
	n := int64(recHeader) + int64(binary.BigEndian.Uint32(b[1:]))
	if n != commitRecord && n != commitRecordV4 || int64(len(b)) < n {
		return commitMark{}, false, false
	}
	rec, valid := decodePayload(b[recHeader:n], binary.BigEndian.Uint32(b[5:]))
	if !valid || rec.typ != recCommit {
		return commitMark{}, false, false
	}
	m, ok = decodeCommit(rec, at+n)
	return m, true, ok
}

// damageError reports a record that fails its checks; it wraps ErrCorrupt.
type damageError struct {
	path   string
	offset int64
	why    string
	// torn: the damage looks like a write cut short by a crash: the bytes
	// are missing (the file ends) or read as zeros, a sector at a time.
	torn bool
}

func (e *damageError) Error() string {
	return fmt.Sprintf("corrupt log %s at offset %d: %s", e.path, e.offset, e.why)
}

func (e *damageError) Unwrap() error { return ErrCorrupt }

// segmentReader reads records from one segment file in order, checking
// each commit against its commit record.
type segmentReader struct {
	path string
	f    *os.File
	r    *bufio.Reader
	size int64
	off  int64 // offset of the next record
	buf  []byte
	v2   bool // a v2 record was read: no v1 record may follow

	// The open commit: it starts at commitStart (where the last commit
	// record or v1 record ended) and its bytes so far have checksum crc and
	// data seqs first..last.
	commitStart int64
	open        commitMark
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

// seek moves a fresh reader to the commit boundary of h; it stays at the
// start when the file is shorter.
func (sr *segmentReader) seek(h readHint) error {
	if h.off > sr.size {
		return nil
	}
	if _, err := sr.f.Seek(h.off, io.SeekStart); err != nil {
		return fmt.Errorf("log %s offset %d: %w", sr.path, h.off, err)
	}
	sr.r.Reset(io.LimitReader(sr.f, sr.size-h.off))
	sr.off, sr.commitStart, sr.v2 = h.off, h.off, h.v2
	return nil
}

// inCommit reports whether the records read so far end inside a commit,
// that is whether the last record read awaits its commit record.
func (sr *segmentReader) inCommit() bool { return sr.off != sr.commitStart }

// openCommit describes the open commit up to the next record.
func (sr *segmentReader) openCommit() commitMark {
	m := sr.open
	m.bytes = sr.off - sr.commitStart
	return m
}

// next returns the next record, io.EOF at a clean end of the file (after
// a closed commit: the file ends or only zeros follow), or a *damageError.
// A commit record is returned once it matched its commit. The record's key
// and value are valid until the next call.
func (sr *segmentReader) next() (record, error) {
	at := sr.off
	hdr, err := sr.r.Peek(recHeader)
	if err != nil && err != io.EOF {
		return record{}, fmt.Errorf("log %s offset %d: %w", sr.path, at, err)
	}
	if len(hdr) == 0 || allZero(hdr) && sr.zerosFrom(at) {
		if !sr.inCommit() {
			return record{}, io.EOF
		}
		return record{}, sr.damaged(at, at, "commit not closed by a commit record", true)
	}
	switch {
	case hdr[0] == recTag:
		return sr.nextV2(at, hdr)
	case hdr[0] <= maxV1Lead && !sr.v2:
		return sr.nextV1(at, hdr)
	}
	return record{}, sr.damaged(at, at+int64(len(hdr)), fmt.Sprintf("no record starts here (byte %#x)", hdr[0]), false)
}

func (sr *segmentReader) nextV2(at int64, hdr []byte) (record, error) {
	if len(hdr) < recHeader {
		return record{}, sr.damaged(at, sr.size, fmt.Sprintf("header cut off after %d bytes", len(hdr)), true)
	}
	if crc32.Checksum(hdr[:9], castagnoli) != binary.BigEndian.Uint32(hdr[9:]) {
		return record{}, sr.damaged(at, at+recHeader, "header checksum mismatch", false)
	}
	length := int64(binary.BigEndian.Uint32(hdr[1:]))
	if length < recFixed || length > maxPayload {
		return record{}, sr.damaged(at, at+recHeader, fmt.Sprintf("record length %d", length), false)
	}
	var h [recHeader]byte
	copy(h[:], hdr)
	p, err := sr.payload(at, recHeader, length)
	if err != nil {
		return record{}, err
	}
	rec, ok := decodePayload(p, binary.BigEndian.Uint32(h[5:]))
	if !ok {
		return record{}, sr.damaged(at, at+recHeader+length, "checksum mismatch", false)
	}
	sr.off, sr.v2 = at+recHeader+length, true
	if rec.typ == recCommit {
		return rec, sr.closeCommit(at, rec)
	}
	sr.open.crc = crc32.Update(crc32.Update(sr.open.crc, castagnoli, h[:]), castagnoli, p)
	if rec.typ != recEpoch {
		if sr.open.first == 0 {
			sr.open.first = rec.seq
		}
		sr.open.last = rec.seq
	}
	return rec, nil
}

// closeCommit checks the commit record at offset at against the commit
// it closes.
func (sr *segmentReader) closeCommit(at int64, rec record) error {
	m, ok := decodeCommit(rec, sr.off)
	want := sr.open
	want.bytes = at - sr.commitStart
	if !ok || m.bytes != want.bytes || m.crc != want.crc || m.first != want.first || m.first != 0 && m.last != want.last {
		// A valid record that does not match: the commit before it lost or
		// changed records, which a torn write cannot do.
		return &damageError{path: sr.path, offset: sr.commitStart,
			why: fmt.Sprintf("commit of %d bytes does not match its commit record at offset %d", want.bytes, at)}
	}
	sr.commitStart, sr.open = sr.off, commitMark{}
	return nil
}

func (sr *segmentReader) nextV1(at int64, hdr []byte) (record, error) {
	if len(hdr) < recHeaderV1 {
		return record{}, sr.damaged(at, sr.size, fmt.Sprintf("header cut off after %d bytes", len(hdr)), true)
	}
	length := int64(binary.BigEndian.Uint32(hdr))
	if length < recFixed || length > maxPayload {
		return record{}, sr.damaged(at, at+recHeaderV1, fmt.Sprintf("record length %d", length), false)
	}
	want := binary.BigEndian.Uint32(hdr[4:])
	p, err := sr.payload(at, recHeaderV1, length)
	if err != nil {
		return record{}, err
	}
	rec, ok := decodePayload(p, want)
	if !ok || rec.typ == recCommit {
		return record{}, sr.damaged(at, at+recHeaderV1+length, "checksum mismatch", false)
	}
	// A v1 record stands alone: it is its own commit.
	sr.off = at + recHeaderV1 + length
	sr.commitStart = sr.off
	return rec, nil
}

// payload skips the header of the record at offset at and reads its
// payload of length bytes.
func (sr *segmentReader) payload(at, header, length int64) ([]byte, error) {
	if at+header+length > sr.size {
		return nil, sr.damaged(at, sr.size, fmt.Sprintf("record of %d bytes cut off by the end of the file", length), true)
	}
	if _, err := sr.r.Discard(int(header)); err != nil {
		return nil, fmt.Errorf("log %s offset %d: %w", sr.path, at, err)
	}
	if int64(cap(sr.buf)) < length {
		sr.buf = make([]byte, length)
	}
	p := sr.buf[:length]
	if _, err := io.ReadFull(sr.r, p); err != nil {
		return nil, fmt.Errorf("log %s offset %d: %w", sr.path, at, err)
	}
	return p, nil
}

// damaged builds the error for a bad record spanning [at, end). missing
// says its bytes run past the end of the file. Otherwise the damage looks
// torn when the record starts with zeros or a sector it overlaps is all
// zeros: a crash leaves unwritten sectors as they were, and the log is
// only ever written over zeros or past its end.
func (sr *segmentReader) damaged(at, end int64, why string, missing bool) *damageError {
	e := &damageError{path: sr.path, offset: at, why: why, torn: missing}
	if !e.torn {
		head := make([]byte, min(recHeader, sr.size-at))
		n, _ := sr.f.ReadAt(head, at)
		e.torn = n == len(head) && allZero(head) || sr.zeroSector(at, end)
	}
	return e
}

// zeroSector reports whether a sector overlapping [from, to) holds only
// zeros (up to the end of the file).
func (sr *segmentReader) zeroSector(from, to int64) bool {
	buf := make([]byte, sectorSize)
	for s := from &^ (sectorSize - 1); s < to && s < sr.size; s += sectorSize {
		b := buf[:min(sectorSize, sr.size-s)]
		if n, err := sr.f.ReadAt(b, s); n == len(b) && (err == nil || err == io.EOF) && allZero(b) {
			return true
		}
	}
	return false
}

func (sr *segmentReader) zerosFrom(off int64) bool {
	buf := make([]byte, 64<<10)
	for off < sr.size {
		n, err := sr.f.ReadAt(buf[:min(int64(len(buf)), sr.size-off)], off)
		if !allZero(buf[:n]) {
			return false
		}
		if err != nil && n == 0 {
			return false
		}
		off += int64(n)
	}
	return true
}

// tornTail describes the bytes after damage that Open drops as torn.
type tornTail struct {
	dataEnd int64  // where their last non-zero byte ends
	commits int    // valid commit records among them: commits written during the torn one's fdatasync
	first   uint64 // the first data seq of those commits, 0 if none
}

// scanTail looks at the bytes from offset from to the end of the file,
// after damage in the commit that starts at offset start: it returns the
// offset of the first commit record among them that vouches for that
// commit (found false if none) and what it found. A record vouches for its
// own commit and for the bytes its segment had fdatasynced when it was
// written. So does any record that a crash cannot explain: one with a
// mark that does not decode, one that says less was synced than the
// commit's start (synced is the start of the oldest commit in flight when
// it was written), and the maxInFlight'th commit written during the torn
// one's fdatasync, which the committer would have waited for.
func (sr *segmentReader) scanTail(from, start int64) (marker int64, found bool, tail tornTail) {
	const chunk = 1 << 20
	buf := make([]byte, chunk+commitRecord)
	tail.dataEnd = from
	for base := from; base < sr.size; base += chunk {
		n, _ := sr.f.ReadAt(buf[:min(int64(len(buf)), sr.size-base)], base)
		b := buf[:n]
		own := b[:min(n, chunk)]
		for i := 0; !found; i++ {
			j := bytes.IndexByte(own[i:], recTag)
			if j < 0 {
				break
			}
			i += j
			at := base + int64(i)
			m, isCommit, ok := commitAt(b[i:], at)
			switch {
			case !isCommit:
			case !ok || at-m.bytes <= start || m.synced != start || tail.commits+1 >= maxInFlight:
				marker, found = at, true
			default:
				tail.commits++
				if tail.first == 0 {
					tail.first = m.first
				}
			}
		}
		for i := len(own) - 1; i >= 0; i-- {
			if own[i] != 0 {
				tail.dataEnd = base + int64(i) + 1
				break
			}
		}
	}
	return marker, found, tail
}

// finalTorn reports whether err, a failure of next, is the torn tail of
// the log, which Open drops with everything after it: damage
// that looks torn, in the newest segment, that no valid commit record
// after it vouches for (scanTail). tail describes what follows the
// damage. Any other failure is returned as the error to refuse the log
// with.
func (sr *segmentReader) finalTorn(err error, newest bool) (tail tornTail, torn bool, _ error) {
	var dmg *damageError
	if !errors.As(err, &dmg) || !newest || !dmg.torn {
		return tornTail{}, false, err
	}
	marker, found, tail := sr.scanTail(dmg.offset+1, sr.commitStart)
	if found {
		return tornTail{}, false, fmt.Errorf("%w; the commit record at offset %d vouches for it, so acknowledged writes are damaged", err, marker)
	}
	return tail, true, nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
