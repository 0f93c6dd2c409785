package datastore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// KeyRef names one key for GetMany. The zero value (empty key) is refused
// with ErrEmptyKey.
type KeyRef struct {
	Slot int
	Key  []byte
}

// GetResult is the outcome of one KeyRef: the value, or Err (ErrNotFound,
// ErrCorrupt, ErrBadSlot, a key validation error or ErrClosed; test with
// errors.Is). Value is nil whenever Err is set and non-nil otherwise.
type GetResult struct {
	Value []byte
	Err   error
}

// KV is one key and its value, as returned by Scan. Both are copies the
// caller owns.
type KV struct {
	Key   []byte
	Value []byte
}

// Stats describes the store at one instant. The zero value means an empty
// store.
type Stats struct {
	Keys         uint64         // keys in the applied state (bbolt); excludes the unapplied overlay
	KeysPerSlot  map[int]uint64 // likewise; only slots holding keys
	LastSeq      uint64
	DurableSeq   uint64
	CommittedSeq uint64
	AppliedSeq   uint64
	FirstLogSeq  uint64 // Seq of the oldest entry ReadLog can return; 0 when the log holds none
	Epoch        uint64
	FileBytes    int64  // size of the bbolt file
	WALBytes     int64  // disk space of the write-ahead-log segments, the zeros ahead of the newest records included
	Commits      uint64 // log group commits since Open; writes per commit show the batching
	Applies      uint64 // applier transactions since Open
}

// view runs fn in a read transaction and reports a closed store as ErrClosed.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	err := s.db.View(fn)
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// packer copies byte slices out of the mmap into one allocation sized in
// advance, so a batch read costs one allocation however many values it has.
// Each copy is capped so appending to it cannot overwrite its neighbour.
type packer struct{ buf []byte }

func newPacker(total int) packer { return packer{buf: make([]byte, 0, total)} }

func (p *packer) copy(b []byte) []byte {
	off := len(p.buf)
	p.buf = append(p.buf, b...)
	return p.buf[off:len(p.buf):len(p.buf)]
}

func (s *Store) checkKey(slot int, key []byte) error {
	if err := s.checkSlot(slot); err != nil {
		return err
	}
	return s.checkKV(key, nil, true)
}

// lookup returns the stored value of key, aliasing the mmap.
func lookup(b *bolt.Bucket, slot int, key []byte) ([]byte, error) {
	if b == nil {
		return nil, ErrNotFound
	}
	rec := b.Get(key)
	if rec == nil {
		return nil, ErrNotFound
	}
	v, ok := openRecord(key, rec)
	if !ok {
		return nil, corruptRecord(slot, key, "checksum mismatch")
	}
	return v, nil
}

func slotBucket(tx *bolt.Tx, slot int) *bolt.Bucket {
	name := slotBucketName(slot)
	return tx.Bucket(name[:])
}

// Get returns a copy of the value stored under key in slot, as of the
// committed seq: the newest committed version not yet applied (kept in
// memory), else the bbolt file. It never waits for the applier. Errors:
// ErrNotFound, ErrCorrupt (naming slot and key), ErrBadSlot, ErrEmptyKey,
// ErrKeyTooLarge, ErrClosed.
func (s *Store) Get(slot int, key []byte) ([]byte, error) {
	r := s.GetMany([]KeyRef{{Slot: slot, Key: key}})[0]
	return r.Value, r.Err
}

// GetMany looks up every ref as of one committed seq, so the results are
// from one instant, and returns one result per ref in the same order. The
// values are copied into one shared allocation. It never waits for the
// applier.
func (s *Store) GetMany(refs []KeyRef) []GetResult {
	out := make([]GetResult, len(refs))
	fromFile := make([]bool, len(refs))
	pending := 0
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		for i := range out {
			out[i].Err = ErrClosed
		}
		return out
	}
	for i, ref := range refs {
		if err := s.checkKey(ref.Slot, ref.Key); err != nil {
			out[i].Err = err
			continue
		}
		if len(s.overlay) > 0 {
			if e := s.lookupOverlayLocked(uint16(ref.Slot), ref.Key, s.committed); e != nil {
				if e.del {
					out[i].Err = ErrNotFound
				} else {
					out[i].Value = e.value
				}
				continue
			}
		}
		fromFile[i] = true
		pending++
	}
	// The read transaction starts before the applier can drop from the
	// overlay what it applies next, so together they show one instant.
	var tx *bolt.Tx
	var err error
	if pending > 0 {
		tx, err = s.db.Begin(false)
	}
	s.mu.RUnlock()
	if err != nil {
		return failResults(out, err)
	}
	if tx != nil {
		// A read-only transaction has nothing to roll back but its lock.
		defer func() { _ = tx.Rollback() }()
	}
	total := 0
	lastSlot, b := -1, (*bolt.Bucket)(nil)
	for i, ref := range refs {
		if fromFile[i] {
			if ref.Slot != lastSlot {
				lastSlot, b = ref.Slot, slotBucket(tx, ref.Slot)
			}
			out[i].Value, out[i].Err = lookup(b, ref.Slot, ref.Key)
		}
		total += len(out[i].Value)
	}
	p := newPacker(total)
	for i := range out {
		if out[i].Err == nil {
			out[i].Value = p.copy(out[i].Value)
		}
	}
	return out
}

func failResults(out []GetResult, err error) []GetResult {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		err = ErrClosed
	}
	for i := range out {
		out[i] = GetResult{Err: err}
	}
	return out
}

// mergeHead is one slot's cursor in Scan's k-way merge.
type mergeHead struct {
	slot int
	c    *bolt.Cursor
	k, v []byte
}

// mergeHeap is a min-heap of cursor heads by key (then slot), hand-rolled
// because container/heap would box every element into an interface.
type mergeHeap []mergeHead

func (h mergeHeap) less(i, j int) bool {
	c := bytes.Compare(h[i].k, h[j].k)
	return c < 0 || c == 0 && h[i].slot < h[j].slot
}

func (h mergeHeap) down(i int) {
	for {
		m := 2*i + 1
		if m >= len(h) {
			return
		}
		if r := m + 1; r < len(h) && h.less(r, m) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// Scan returns the keys in [start, end) held in any of the given slots, in
// byte order, with their values, at most limit of them (limit <= 0: no
// limit). A nil start scans from the first key; a nil or empty end has no
// upper bound. Scan first waits until the applier has applied everything
// committed when it was called, then reads the bbolt file alone: all slots
// in one transaction, merged through one cursor per slot, so only the
// returned pairs are ever copied. Errors: ErrBadSlot, ErrCorrupt (naming
// slot and key), ErrClosed, ctx.Err() while waiting.
func (s *Store) Scan(ctx context.Context, slots []int, start, end []byte, limit int) ([]KV, error) {
	slots = slices.Clone(slots)
	slices.Sort(slots)
	slots = slices.Compact(slots)
	for _, slot := range slots {
		if err := s.checkSlot(slot); err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
	}
	s.mu.RLock()
	want := s.committed
	s.mu.RUnlock()
	if err := s.waitApplied(ctx, want); err != nil {
		return nil, fmt.Errorf("scan: wait for the applier to reach seq %d: %w", want, err)
	}
	inRange := func(k []byte) bool { return k != nil && (len(end) == 0 || bytes.Compare(k, end) < 0) }
	var out []KV
	err := s.view(func(tx *bolt.Tx) error {
		h := make(mergeHeap, 0, len(slots))
		for _, slot := range slots {
			b := slotBucket(tx, slot)
			if b == nil {
				continue
			}
			c := b.Cursor()
			k, v := c.Seek(start)
			if inRange(k) {
				h = append(h, mergeHead{slot: slot, c: c, k: k, v: v})
			}
		}
		for i := len(h)/2 - 1; i >= 0; i-- {
			h.down(i)
		}
		total := 0
		for len(h) > 0 && (limit <= 0 || len(out) < limit) {
			top := &h[0]
			v, ok := openRecord(top.k, top.v)
			if !ok {
				return corruptRecord(top.slot, top.k, "checksum mismatch")
			}
			out = append(out, KV{Key: top.k, Value: v})
			total += len(top.k) + len(v)
			if top.k, top.v = top.c.Next(); !inRange(top.k) {
				h[0] = h[len(h)-1]
				h = h[:len(h)-1]
			}
			h.down(0)
		}
		p := newPacker(total)
		for i := range out {
			out[i] = KV{Key: p.copy(out[i].Key), Value: p.copy(out[i].Value)}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	return out, nil
}

// waitApplied waits until the applier reached seq, hurrying it.
func (s *Store) waitApplied(ctx context.Context, seq uint64) error {
	s.mu.RLock()
	done := s.applied >= seq
	s.mu.RUnlock()
	if done {
		return nil
	}
	return s.hurryApplier(func() error {
		return s.waitFor(ctx, func() bool { return s.applied >= seq })
	})
}

// WaitLog returns nil once LastSeq() > after, that is once an entry after
// after has been written (maybe not yet fsynced), so a primary can ship it
// while it fsyncs. Errors: ctx.Err(), ErrClosed.
func (s *Store) WaitLog(ctx context.Context, after uint64) error {
	return s.waitFor(ctx, func() bool { return s.last > after })
}

// ReadLog returns the log entries with Seq >= from in order, at most limit of
// them (limit <= 0: all), as copies the caller owns; none when from is past
// LastSeq(). A from of 0 counts as 1. Entries are readable as soon as the
// committer has written them, before their fdatasync returns (compare
// DurableSeq). Recent entries (about the last 64 MiB, and all unapplied
// ones) come from memory, older ones from the segment files.
//
// Errors: ErrLogTrimmed when entries at or after from have been deleted or
// predate a Restore (the reader needs a Snapshot), ErrCorrupt naming file
// and offset, ErrClosed.
func (s *Store) ReadLog(from uint64, limit int) ([]LogEntry, error) {
	from = max(from, 1)
	var out []LogEntry
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, fmt.Errorf("read log: %w", ErrClosed)
	}
	tailFirst := s.last + 1
	if s.tail.len() > 0 {
		tailFirst = s.tail.firstSeq()
	}
	segs := slices.Clone(s.segments)
	s.mu.RUnlock()
	if from < tailFirst {
		var err error
		if out, err = readSegments(segs, from, tailFirst, limit); err != nil {
			return nil, fmt.Errorf("read log: %w", err)
		}
		from += uint64(len(out))
	}
	if limit <= 0 || len(out) < limit {
		s.mu.RLock()
		if s.tail.len() > 0 && from >= s.tail.firstSeq() {
			for i := int(from - s.tail.firstSeq()); i < s.tail.len() && (limit <= 0 || len(out) < limit); i++ {
				out = append(out, s.tail.at(i).logEntry())
			}
		} else if from < s.last+1 && len(out) == 0 {
			// The tail moved past from between the two looks: rare, and
			// the reader simply asks again.
			s.mu.RUnlock()
			return s.ReadLog(from, limit)
		}
		s.mu.RUnlock()
	}
	total := 0
	for i := range out {
		total += len(out[i].Key) + len(out[i].Value)
	}
	p := newPacker(total)
	for i := range out {
		out[i].Key, out[i].Value = p.copy(out[i].Key), p.copy(out[i].Value)
		if out[i].Delete {
			out[i].Value = nil
		}
	}
	return out, nil
}

// readSegments reads data entries with from <= seq < stop from the
// segment files.
func readSegments(segs []segment, from, stop uint64, limit int) ([]LogEntry, error) {
	if len(segs) == 0 || from < segs[0].first {
		oldest := uint64(0)
		if len(segs) > 0 {
			oldest = segs[0].first
		}
		return nil, fmt.Errorf("seq %d: oldest kept entry is seq %d: %w", from, oldest, ErrLogTrimmed)
	}
	i := 0
	for i+1 < len(segs) && segs[i+1].first <= from {
		i++
	}
	var out []LogEntry
	for ; i < len(segs); i++ {
		sr, err := openSegment(segs[i].path, segs[i].size)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("seq %d: segment %s deleted: %w", from, segs[i].path, ErrLogTrimmed)
		}
		if err != nil {
			return nil, err
		}
		done, err := readSegment(sr, from, stop, limit, &out)
		sr.close()
		if err != nil || done {
			return out, err
		}
	}
	return out, nil
}

// readSegment appends the wanted entries of one segment to out and reports
// whether the reading is done (stop or limit reached).
func readSegment(sr *segmentReader, from, stop uint64, limit int, out *[]LogEntry) (bool, error) {
	for {
		rec, err := sr.next()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if rec.typ == recEpoch || rec.seq < from {
			continue
		}
		if rec.seq >= stop || limit > 0 && len(*out) >= limit {
			return true, nil
		}
		// Keys and values alias the reader's buffer until the next record.
		e := newEntry(rec.slot, rec.typ == recDelete, rec.key, rec.value)
		e.seq, e.epoch = rec.seq, rec.epoch
		*out = append(*out, e.logEntry())
	}
}

// Stats counts the keys of every slot in the applied state (walking each
// slot's pages, so it costs time in proportion to the file size) and
// reports the log positions. Errors: ErrCorrupt (meta records), ErrClosed,
// and stat errors of the files.
func (s *Store) Stats() (Stats, error) {
	st := Stats{KeysPerSlot: make(map[int]uint64), Commits: s.commits.Load(), Applies: s.applies.Load()}
	s.mu.RLock()
	st.LastSeq, st.DurableSeq, st.CommittedSeq, st.AppliedSeq, st.Epoch = s.last, s.durable, s.committed, s.applied, s.epoch
	segs := slices.Clone(s.segments)
	if len(segs) > 0 && segs[0].first <= s.last {
		st.FirstLogSeq = segs[0].first
	}
	s.mu.RUnlock()
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			slot, ok := slotOfBucketName(k)
			if !ok || v != nil {
				continue
			}
			if n := uint64(tx.Bucket(k).Stats().KeyN); n > 0 {
				st.KeysPerSlot[slot] = n
				st.Keys += n
			}
		}
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	fi, err := os.Stat(filepath.Join(s.dir, dataFile))
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	st.FileBytes = fi.Size()
	for _, seg := range segs {
		if fi, err := os.Stat(seg.path); err == nil {
			st.WALBytes += fi.Size()
		}
	}
	return st, nil
}

// Snapshot waits until the applier has applied everything committed when
// it was called, then calls fn for every key of the given slots, slot by
// slot in the given order and in key order within a slot, all from one
// bbolt read transaction, and returns the applied seq that transaction reflects: the
// copy plus the log entries after that seq reproduce the store exactly
// (docs/replication.md, "Catch-up"). The caller then ships the log from seq+1 with
// ReadLog; while Snapshot runs, the log segments holding those entries are
// pinned (not deleted), but after it returns they are kept only as
// Options.LogRetention says, so the caller should start reading promptly.
// key and value alias the file and are valid only until fn returns. The
// read transaction also keeps the pages it reads from being reused; the
// file grows meanwhile.
//
// Errors: the first error of fn, ctx.Err() (while waiting, and checked
// every 1024 keys),
// ErrBadSlot, ErrCorrupt (naming slot and key; fn has then seen only the
// keys before it), ErrRestoring, ErrClosed.
func (s *Store) Snapshot(ctx context.Context, slots []int, fn func(slot int, key, value []byte) error) (seq uint64, err error) {
	for _, slot := range slots {
		if err := s.checkSlot(slot); err != nil {
			return 0, fmt.Errorf("snapshot: %w", err)
		}
	}
	s.mu.Lock()
	if s.closed || s.restoring {
		err := ErrClosed
		if !s.closed {
			err = ErrRestoring
		}
		s.mu.Unlock()
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	pin, want := s.applied, s.committed
	s.pins[pin]++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.pins[pin]--; s.pins[pin] == 0 {
			delete(s.pins, pin)
		}
		s.mu.Unlock()
	}()
	if err := s.waitApplied(ctx, want); err != nil {
		return 0, fmt.Errorf("snapshot: wait for the applier to reach seq %d: %w", want, err)
	}
	err = s.view(func(tx *bolt.Tx) error {
		applied, err := metaU64(tx, metaApplied)
		if err != nil {
			return err
		}
		seq = applied
		n := 0
		for _, slot := range slots {
			b := slotBucket(tx, slot)
			if b == nil {
				continue
			}
			c := b.Cursor()
			for k, rec := c.First(); k != nil; k, rec = c.Next() {
				if n++; n%1024 == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				v, ok := openRecord(k, rec)
				if !ok {
					return corruptRecord(slot, k, "checksum mismatch")
				}
				if err := fn(slot, k, v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	return seq, nil
}
