package datastore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
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
	Keys        uint64
	KeysPerSlot map[int]uint64 // only slots holding keys
	LastSeq     uint64
	FirstLogSeq uint64 // Seq of the oldest kept log entry; 0 when the log is empty
	Epoch       uint64
	FileBytes   int64
	Commits     uint64 // transactions committed since Open; mutations per commit show the batching
}

// view runs fn in a read transaction and reports a closed store as ErrClosed.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	if s.isClosed.Load() {
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

// Get returns a copy of the value stored under key in slot. Errors:
// ErrNotFound, ErrCorrupt (naming slot and key), ErrBadSlot, ErrEmptyKey,
// ErrKeyTooLarge, ErrClosed.
func (s *Store) Get(slot int, key []byte) ([]byte, error) {
	if err := s.checkKey(slot, key); err != nil {
		return nil, err
	}
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		v, err := lookup(slotBucket(tx, slot), slot, key)
		if err == nil {
			out = bytes.Clone(v)
		}
		return err
	})
	return out, err
}

// GetMany looks up every ref in one read transaction, so the results are
// from one instant, and returns one result per ref in the same order. The
// values are copied out of the file into one shared allocation.
func (s *Store) GetMany(refs []KeyRef) []GetResult {
	out := make([]GetResult, len(refs))
	err := s.view(func(tx *bolt.Tx) error {
		total := 0
		lastSlot, b := -1, (*bolt.Bucket)(nil)
		for i, ref := range refs {
			if err := s.checkKey(ref.Slot, ref.Key); err != nil {
				out[i].Err = err
				continue
			}
			if ref.Slot != lastSlot {
				lastSlot, b = ref.Slot, slotBucket(tx, ref.Slot)
			}
			out[i].Value, out[i].Err = lookup(b, ref.Slot, ref.Key)
			total += len(out[i].Value)
		}
		p := newPacker(total)
		for i := range out {
			if out[i].Err == nil {
				out[i].Value = p.copy(out[i].Value)
			}
		}
		return nil
	})
	if err != nil {
		for i := range out {
			out[i] = GetResult{Err: err}
		}
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
// upper bound. All slots are read in one transaction and merged through one
// cursor per slot, so only the returned pairs are ever copied. Errors:
// ErrBadSlot, ErrCorrupt (naming slot and key), ErrClosed.
func (s *Store) Scan(slots []int, start, end []byte, limit int) ([]KV, error) {
	slots = slices.Clone(slots)
	slices.Sort(slots)
	slots = slices.Compact(slots)
	for _, slot := range slots {
		if err := s.checkSlot(slot); err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
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

// ReadLog returns the log entries with Seq >= from in order, at most limit of
// them (limit <= 0: all), copied out of the file; none when from is past
// LastSeq(). A from of 0 counts as 1. Errors: ErrLogTrimmed when
// entries at or after from have been trimmed (the reader needs a Snapshot),
// ErrCorrupt naming the seq, ErrClosed.
func (s *Store) ReadLog(from uint64, limit int) ([]LogEntry, error) {
	from = max(from, 1)
	var out []LogEntry
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOplog).Cursor()
		first, _ := c.First()
		if first == nil {
			lastSeq, err := metaU64(tx, metaLastSeq)
			if err != nil {
				return err
			}
			if from <= lastSeq {
				return fmt.Errorf("seq %d: log is empty up to seq %d: %w", from, lastSeq, ErrLogTrimmed)
			}
			return nil
		}
		if oldest := seqOf(first); from < oldest {
			return fmt.Errorf("seq %d: oldest kept entry is seq %d: %w", from, oldest, ErrLogTrimmed)
		}
		var seek [seqSize]byte
		putSeq(seek[:], from)
		total := 0
		for k, v := c.Seek(seek[:]); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			e, ok := decodeEntry(k, v)
			if !ok {
				return fmt.Errorf("log seq %d: %w", seqOf(k), ErrCorrupt)
			}
			out = append(out, e)
			total += len(e.Key) + len(e.Value)
		}
		p := newPacker(total)
		for i := range out {
			out[i].Key, out[i].Value = p.copy(out[i].Key), p.copy(out[i].Value)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	return out, nil
}

// Stats counts the keys of every slot (walking each slot's pages, so it
// costs time in proportion to the file size) and reports the log position,
// all from one read transaction. Errors: ErrCorrupt (meta records),
// ErrClosed, and the file's stat error.
func (s *Store) Stats() (Stats, error) {
	st := Stats{KeysPerSlot: make(map[int]uint64), Commits: s.commits.Load()}
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
		var err error
		if st.LastSeq, err = metaU64(tx, metaLastSeq); err != nil {
			return err
		}
		if st.Epoch, err = metaU64(tx, metaEpoch); err != nil {
			return err
		}
		if first, _ := tx.Bucket(bucketOplog).Cursor().First(); first != nil {
			st.FirstLogSeq = seqOf(first)
		}
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	st.FileBytes = fi.Size()
	return st, nil
}

// Snapshot calls fn for every key of the given slots, slot by slot in the
// given order and in key order within a slot, all from one read
// transaction, and returns the LastSeq of that same instant: the copy plus
// the log entries after that seq reproduce the store exactly
// (REPLICATION-NOTES #6). key and value alias the file and are valid only
// until fn returns. A snapshot holds its read transaction until it returns,
// which keeps the pages it reads from being reused; the file grows meanwhile.
//
// Errors: the first error of fn, ctx.Err() (checked every 1024 keys),
// ErrBadSlot, ErrCorrupt (naming slot and key; fn has then seen only the
// keys before it), ErrClosed.
func (s *Store) Snapshot(ctx context.Context, slots []int, fn func(slot int, key, value []byte) error) (lastSeq uint64, err error) {
	for _, slot := range slots {
		if err := s.checkSlot(slot); err != nil {
			return 0, fmt.Errorf("snapshot: %w", err)
		}
	}
	err = s.view(func(tx *bolt.Tx) error {
		seq, err := metaU64(tx, metaLastSeq)
		if err != nil {
			return err
		}
		lastSeq = seq
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
	return lastSeq, nil
}
