package datastore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

const (
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
	drop  bool // drops every key of slot; key and value are empty
	mark  bool // stores value as the mark named key; slot is 0
	tag   Tag
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
	return LogEntry{Seq: e.seq, Epoch: e.epoch, Slot: int(e.slot), Key: e.key, Value: e.value, Delete: e.del, Drop: e.drop, Mark: e.mark, Tag: e.tag}
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

// writeLog writes buf after the active segment's records: over the zeros
// of a spare segment, or past the end of a segment that had none.
func (s *Store) writeLog(buf []byte) error {
	_, err := s.wal.WriteAt(buf, s.walSize)
	return err
}

// sync makes what was written to the log segment f durable.
func (s *Store) sync(f *os.File) error {
	if s.noSync {
		return nil
	}
	return fdatasync(f)
}

// rollIfFull starts a new segment once the active one reached the segment
// size, then deletes segments no longer needed. It waits for the active
// segment's fdatasyncs first, and returns the store's error (ErrFailed)
// if one failed.
func (s *Store) rollIfFull() error {
	// A segment in use asks for the next spare once it holds a little (an
	// idle store never writes one), so the spare can be written slowly. A
	// segment that grows as it is written asks for a spare written without
	// pauses, and gives way to it as soon as it is ready.
	if s.walSize == 0 || s.walSize < s.segSize/64 {
		return nil
	}
	s.spares.request(s.walGrows)
	if s.walSize < s.segSize && !(s.walGrows && len(s.spares.ready) > 0) {
		return nil
	}
	s.waitSynced()
	if err := s.Err(); err != nil {
		return err
	}
	next := s.last + 1
	path := segmentPath(s.walDir, next)
	f := s.spares.take(path)
	grows := f == nil
	if grows {
		var err error
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err != nil {
			return err
		}
	}
	if err := syncDir(s.walDir); err != nil {
		_ = f.Close()
		return err
	}
	old := s.wal
	s.wal, s.walSize, s.walGrows = f, 0, grows
	s.synced.Store(0)
	if err := old.Close(); err != nil {
		s.log.Warn("datastore closing log segment", "err", err)
	}
	s.mu.Lock()
	s.segments = append(s.segments, segment{first: next, last: s.last, path: path})
	s.mu.Unlock()
	s.log.Debug("datastore rolled log segment", "file", path)
	s.trimSegments()
	return nil
}

// trimSegments deletes the oldest segments whose records are all older
// than applied, than the retention and than any Snapshot pin. The active
// segment is never deleted.
func (s *Store) trimSegments() {
	s.mu.Lock()
	keep := s.applied
	if s.last > s.retention {
		keep = min(keep, s.last-s.retention)
	} else {
		keep = 0
	}
	for pin := range s.pins {
		keep = min(keep, pin)
	}
	n := 0
	for n < len(s.segments)-1 && s.segments[n].last < keep {
		n++
	}
	gone := append([]segment(nil), s.segments[:n]...)
	s.segments = append(s.segments[:0:0], s.segments[n:]...)
	s.mu.Unlock()
	for _, seg := range gone {
		if err := os.Remove(seg.path); err != nil {
			s.log.Warn("datastore deleting log segment", "file", seg.path, "err", err)
			continue
		}
		s.log.Info("datastore deleted log segment", "file", seg.path, "last_seq", seg.last)
	}
}

// WaitLog returns nil once LastSeq() > after, that is once an entry after
// after has been written (maybe not yet fsynced), so a primary can ship it
// while it fsyncs. Errors: ctx.Err(), ErrClosed.
func (s *Store) WaitLog(ctx context.Context, after uint64) error {
	s.logWaiters.Add(1)
	defer s.logWaiters.Add(-1)
	return s.waitOn(ctx, &s.logChanged, func() bool { return s.last > after })
}

// FirstLogSeq returns the seq of the oldest entry ReadLog can return now,
// LastSeq()+1 when the log holds none.
func (s *Store) FirstLogSeq() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.segments) > 0 && s.segments[0].first <= s.last {
		return s.segments[0].first
	}
	return s.last + 1
}

// Limit bounds what one ReadLog or Scan returns. The zero value is no bound.
type Limit struct {
	// Entries is the most entries returned; 0: any number.
	Entries int
	// Bytes stops the reading once the keys and values returned reach it
	// (the entry that crosses it is still returned, so a reader always
	// makes progress); 0: any size.
	Bytes int
}

// readLogPrealloc bounds the entries ReadLog makes room for before it
// knows how many its byte bound lets through.
const readLogPrealloc = 4096

// logRead is one AppendLog's output and the bound it fills up to.
type logRead struct {
	lim   Limit
	out   []LogEntry
	n     int // entries added to out
	bytes int
}

func (r *logRead) full() bool {
	return r.lim.Entries > 0 && r.n >= r.lim.Entries || r.lim.Bytes > 0 && r.bytes >= r.lim.Bytes
}

func (r *logRead) add(e LogEntry) {
	r.out = append(r.out, e)
	r.n++
	r.bytes += len(e.Key) + len(e.Value)
}

// ReadLog returns the log entries with Seq >= from in order, within lim;
// none when from is past
// LastSeq(). A from of 0 counts as 1. Entries are readable as soon as the
// committer has written them, before their fdatasync returns (compare
// DurableSeq). Recent entries (about the last 16 MiB, and all unapplied
// ones) come from memory, older ones from the segment files. Keys and
// values may share memory with the store's and must not be modified: an
// entry's bytes never change once it is written, so readers (a primary
// ships each entry once to every follower) need no copy of their own.
//
// Errors: ErrLogTrimmed when entries at or after from have been deleted or
// predate a Restore (the reader needs a Snapshot), ErrCorrupt naming file
// and offset, ErrClosed.
func (s *Store) ReadLog(from uint64, lim Limit) ([]LogEntry, error) {
	return s.AppendLog(nil, from, lim)
}

// AppendLog is ReadLog appending to dst (lim bounds what it appends), so
// that a reader that ships entries as it reads them (a primary, once per
// follower and per entry) reuses one slice instead of allocating one per
// read. On an error it returns nil.
func (s *Store) AppendLog(dst []LogEntry, from uint64, lim Limit) ([]LogEntry, error) {
	from = max(from, 1)
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, fmt.Errorf("read log: %w", ErrClosed)
	}
	r := &logRead{lim: lim, out: dst}
	if from <= s.last {
		n := min(s.last+1-from, readLogPrealloc)
		if lim.Entries > 0 {
			n = min(n, uint64(lim.Entries))
		}
		r.out = slices.Grow(dst, int(n))
	}
	tailFirst := s.last + 1
	if s.tail.len() > 0 {
		tailFirst = s.tail.firstSeq()
	}
	segs := slices.Clone(s.segments)
	hints := s.readHints
	s.mu.RUnlock()
	if from < tailFirst {
		h, err := readSegments(segs, from, tailFirst, r, &hints)
		if err != nil {
			return nil, fmt.Errorf("read log: %w", err)
		}
		if h.path != "" {
			s.mu.Lock()
			s.readHints.add(hints.gen, h)
			s.mu.Unlock()
		}
		from += uint64(r.n)
	}
	if !r.full() {
		s.mu.RLock()
		if s.tail.len() > 0 && from >= s.tail.firstSeq() {
			for i := int(from - s.tail.firstSeq()); i < s.tail.len() && !r.full(); i++ {
				r.add(s.tail.at(i).logEntry())
			}
		} else if from < s.last+1 && r.n == 0 {
			// The tail moved past from between the two looks: rare, and
			// the reader simply asks again.
			s.mu.RUnlock()
			return s.AppendLog(dst, from, lim)
		}
		s.mu.RUnlock()
	}
	return r.out, nil
}

// readSegments reads data entries with from <= seq < stop from the
// segment files into r. It starts a segment at the best of hints that
// allows, and returns where a later read could start.
func readSegments(segs []segment, from, stop uint64, r *logRead, hints *readHints) (readHint, error) {
	if len(segs) == 0 || from < segs[0].first {
		oldest := uint64(0)
		if len(segs) > 0 {
			oldest = segs[0].first
		}
		return readHint{}, fmt.Errorf("seq %d: oldest kept entry is seq %d: %w", from, oldest, ErrLogTrimmed)
	}
	i := 0
	for i+1 < len(segs) && segs[i+1].first <= from {
		i++
	}
	var last readHint
	for ; i < len(segs); i++ {
		sr, err := openSegment(segs[i].path, segs[i].size)
		if errors.Is(err, os.ErrNotExist) {
			return readHint{}, fmt.Errorf("seq %d: segment %s deleted: %w", from, segs[i].path, ErrLogTrimmed)
		}
		if err != nil {
			return readHint{}, err
		}
		if h, ok := hints.best(segs[i].path, from); ok {
			err = sr.seek(h)
		}
		var done bool
		if err == nil {
			done, err = readSegment(sr, from, stop, r, &last)
		}
		sr.close()
		if err != nil || done {
			return last, err
		}
	}
	return last, nil
}

// readSegment adds the wanted entries of one segment to r and reports
// whether the reading is done (stop or r's bound reached). last is set to
// the newest commit boundary passed.
func readSegment(sr *segmentReader, from, stop uint64, r *logRead, last *readHint) (bool, error) {
	next := uint64(0) // lowest seq a record after the reader may have
	for {
		rec, err := sr.next()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if rec.typ == recCommit && next > 0 {
			*last = readHint{path: sr.path, seq: next, off: sr.off, v2: sr.v2}
		}
		if !rec.isData() {
			continue
		}
		next = rec.seq + 1
		if rec.seq < from {
			continue
		}
		if rec.seq >= stop || r.full() {
			return true, nil
		}
		// entry copies the key and value out of the reader's buffer,
		// which the next record overwrites.
		e := rec.entry()
		r.add(e.logEntry())
	}
}

// readHints remembers a few commit boundaries in the segment files where
// recent reads stopped, so that the next read from there (a follower
// catching up, a snapshot's check of its tags) seeks to it instead of
// reading its segment from the start again: reading a log of a million
// entries 4,096 at a time took half a minute.
type readHints struct {
	// gen changes whenever segment files are cut or replaced, which
	// invalidates every hint (a later read's hint from before is dropped).
	gen  uint64
	next int
	h    [8]readHint
}

// readHint says that in segment file path, the record at offset off
// starts a commit and no data record from there on has a seq below seq.
type readHint struct {
	path string
	seq  uint64
	off  int64
	v2   bool // the reader had met v2 records before off
}

// best returns the hint of path that starts closest below from.
func (hs *readHints) best(path string, from uint64) (readHint, bool) {
	var out readHint
	for _, h := range hs.h {
		if h.path == path && h.seq <= from && h.seq > out.seq {
			out = h
		}
	}
	return out, out.path != ""
}

// add keeps h, found by a read that started at generation gen.
func (hs *readHints) add(gen uint64, h readHint) {
	if gen != hs.gen {
		return
	}
	for i := range hs.h {
		if hs.h[i].path == h.path && hs.h[i].seq == h.seq {
			return
		}
	}
	hs.h[hs.next] = h
	hs.next = (hs.next + 1) % len(hs.h)
}

// reset forgets every hint: segment files were cut or replaced.
func (hs *readHints) reset() { *hs = readHints{gen: hs.gen + 1} }

// TruncateAfter removes the log entries after seq, as a follower does when
// its log diverged from its new primary's (docs/replication.md, "Catch-up"): the log
// file is cut at the record boundary and fsynced, later segments are
// deleted, and the entries leave memory too. Epochs that started after seq
// stay in the epoch map as empty epochs starting at seq+1, and Epoch() does
// not go down, so fencing holds. A seq at or past LastSeq() changes nothing.
// The truncation is queued with the writes, so writes queued before it are
// written first.
//
// Errors: ErrTruncateCommitted if seq < CommittedSeq() (those entries may be
// applied and acknowledged); ErrClosed, ErrRestoring, ErrFailed (also when
// the truncation itself fails to reach the disk); ctx.Err() if ctx ends
// while it waits (it may still happen).
func (s *Store) TruncateAfter(ctx context.Context, seq uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{kind: kindCall, call: func() error { return s.truncateAfter(seq) }}
	if _, err := s.submit(ctx, r); err != nil {
		return fmt.Errorf("truncate log after seq %d: %w", seq, err)
	}
	return nil
}

// truncateAfter runs on the committer, with the applier held off.
func (s *Store) truncateAfter(seq uint64) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	if seq < s.committed {
		err := fmt.Errorf("committed seq is %d: %w", s.committed, ErrTruncateCommitted)
		s.mu.Unlock()
		return err
	}
	if seq >= s.last {
		s.mu.Unlock()
		return nil
	}
	// From here SetCommitted cannot commit what is being removed.
	s.durable = min(s.durable, seq)
	if !s.auto {
		s.target = s.committed
	}
	segs := slices.Clone(s.segments)
	s.mu.Unlock()

	i := len(segs) - 1
	for i > 0 && segs[i].first > seq+1 {
		i--
	}
	off, kept, closing, err := cutPoint(segs[i], seq)
	if err != nil {
		return s.setFailed("truncate: find cut point", err)
	}
	size, err := s.cutLog(segs, i, off, closing)
	if err != nil {
		return s.setFailed("truncate: cut log", err)
	}
	s.mu.Lock()
	dropped := 0
	for ; dropped < s.tail.len(); dropped++ {
		e := s.tail.at(s.tail.len() - 1 - dropped)
		if e.seq <= seq {
			break
		}
		s.dropNewestLocked(e)
		s.tailBytes -= e.cost()
		s.overlayBytes -= e.cost()
	}
	s.tail.dropBack(dropped)
	s.last = seq
	s.epochs = clampEpochs(s.epochs, seq+1)
	s.logEpoch = epochAt(s.epochs, seq)
	segs[i].last, segs[i].size = kept, size
	s.segments = segs[:i+1]
	s.readHints.reset()
	epoch, epochs := s.epoch, s.epochs
	s.notifyLocked()
	s.mu.Unlock()
	err = s.db.Update(func(tx *bolt.Tx) error { return putEpochs(tx, epoch, epochs) })
	if err != nil {
		return s.setFailed("truncate: persist epoch map", err)
	}
	s.log.Info("datastore truncated log", "after_seq", seq, "file", segs[i].path, "offset", off)
	return nil
}

// cutPoint finds where to cut seg so that only its records up to seq are
// kept: the offset of the first record after seq, the highest seq kept,
// and, when the cut falls inside a commit, the commit record that closes
// the kept part of that commit (nil otherwise).
func cutPoint(seg segment, seq uint64) (off int64, kept uint64, closing []byte, err error) {
	sr, err := openSegment(seg.path, seg.size)
	if err != nil {
		return 0, 0, nil, err
	}
	defer sr.close()
	kept = seg.first - 1
	for {
		at, open := sr.off, sr.openCommit()
		rec, err := sr.next()
		if err != nil && err != io.EOF {
			return 0, 0, nil, err
		}
		if err == io.EOF || rec.seq > seq {
			if open.bytes > 0 {
				if open.first == 0 {
					open.last = kept
				}
				open.synced = at // a cut follows every fdatasync of the log
				closing = appendCommit(nil, open)
			}
			return at, kept, closing, nil
		}
		kept = max(kept, rec.seq)
	}
}

// cutLog truncates segment i at off, appends closing (the commit record
// of a commit cut in two), deletes the segments after it and makes it the
// active segment; it returns the segment's new size.
func (s *Store) cutLog(segs []segment, i int, off int64, closing []byte) (int64, error) {
	if i != len(segs)-1 {
		if err := s.wal.Close(); err != nil {
			return 0, err
		}
		s.wal = nil
		for _, seg := range segs[i+1:] {
			if err := os.Remove(seg.path); err != nil {
				return 0, err
			}
		}
		f, err := os.OpenFile(segs[i].path, os.O_WRONLY, 0)
		if err != nil {
			return 0, err
		}
		s.wal = f
	}
	if err := s.wal.Truncate(off); err != nil {
		return 0, err
	}
	if _, err := s.wal.WriteAt(closing, off); err != nil {
		return 0, err
	}
	size := off + int64(len(closing))
	s.walSize, s.walGrows = size, true
	if err := s.sync(s.wal); err != nil {
		return 0, err
	}
	s.synced.Store(size)
	return size, syncDir(s.walDir)
}

// removeSegments deletes every log file.
func (s *Store) removeSegments() error {
	segs, err := listSegments(s.walDir)
	if err != nil {
		return err
	}
	for _, seg := range segs {
		if err := os.Remove(seg.path); err != nil {
			return err
		}
	}
	return syncDir(s.walDir)
}

// newEntry copies key and value into one allocation.
func newEntry(slot uint16, del bool, key, value []byte) entry {
	if del {
		value = nil
	}
	buf := make([]byte, len(key)+len(value))
	copy(buf, key)
	copy(buf[len(key):], value)
	e := entry{slot: slot, del: del, key: buf[:len(key):len(key)]}
	if !del {
		e.value = buf[len(key):]
	}
	return e
}
