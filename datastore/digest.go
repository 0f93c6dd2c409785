package datastore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
	bolt "go.etcd.io/bbolt"
)

// Per-slot stats let two stores compare a slot's content without reading
// it: a slot migration compares source and target this way before it
// switches the slot's owner. The applier keeps them in the bucket "stats"
// in the same transaction as the slot's data, so they always describe
// exactly the file's state: replay, restart and restore need nothing of
// their own.

// SlotDigest describes one slot's applied content: how many keys it holds,
// their keys' and values' bytes, and the sum modulo 2^64 over its keys of
// XXH64 (seed 0) of the key's length (4 bytes, big-endian), the key and the
// value. The sum does not depend on the order the keys were written in, so
// two stores holding the same pairs have equal digests however they got
// them; XXH64 is a fixed published function, so digests compare across
// processes, machines and versions.
type SlotDigest struct {
	Slot  int
	Keys  uint64
	Bytes uint64
	Hash  uint64
}

// SlotDigests waits until the applier has applied seq atLeast (hurrying
// it), then reads the digests of the given slots, in their order, in one
// read transaction between apply rounds, and returns the applied seq that
// transaction reflects (at least atLeast). A slot without keys has a zero
// digest. It waits for as long as ctx allows when atLeast is never
// committed. An atLeast of 0 asks for no wait at all (a count that must
// not wait): the digests may then hold part of a round in progress.
// Errors: ErrBadSlot, ErrCorrupt, ErrClosed, ctx.Err().
func (s *Store) SlotDigests(ctx context.Context, slots []int, atLeast uint64) (applied uint64, _ []SlotDigest, _ error) {
	if err := s.checkSlots(slots); err != nil {
		return 0, nil, fmt.Errorf("slot digests: %w", err)
	}
	if err := s.waitApplied(ctx, atLeast); err != nil {
		return 0, nil, fmt.Errorf("slot digests: wait for the applier to reach seq %d: %w", atLeast, err)
	}
	out := make([]SlotDigest, len(slots))
	view := s.view
	if atLeast > 0 {
		view = func(fn func(tx *bolt.Tx) error) error { return s.viewSettled(ctx, fn) }
	}
	err := view(func(tx *bolt.Tx) error {
		var err error
		if applied, err = metaU64(tx, metaApplied); err != nil {
			return err
		}
		for i, slot := range slots {
			st, err := loadSlotStats(tx.Bucket(bucketStats), uint16(slot))
			if err != nil {
				return err
			}
			out[i] = SlotDigest{Slot: slot, Keys: st.keys, Bytes: st.bytes, Hash: st.hash}
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("slot digests: %w", err)
	}
	return applied, out, nil
}

// CommittedSlotDigests is SlotDigests as of the committed seq, without
// waiting for the applier: once seq atLeast is committed it reads the
// slots' stats in one read transaction and adds the committed entries of
// those slots not applied yet, the same merge a snapshot does, so the
// digests describe exactly what the store serves. It returns the committed
// seq they reflect (at least atLeast). A slot migration's hand-over
// compares digests this way: neither side waits for an apply round, which
// on a busy disk takes hundreds of milliseconds. Its cost grows with the
// slots' unapplied entries. Errors: ErrBadSlot, ErrCorrupt, ErrRestoring,
// ErrClosed, ctx.Err().
func (s *Store) CommittedSlotDigests(ctx context.Context, slots []int, atLeast uint64) (seq uint64, _ []SlotDigest, _ error) {
	if err := s.checkSlots(slots); err != nil {
		return 0, nil, fmt.Errorf("slot digests: %w", err)
	}
	if err := s.waitFor(ctx, func() bool { return s.committed >= atLeast }); err != nil {
		return 0, nil, fmt.Errorf("slot digests: wait for seq %d to commit: %w", atLeast, err)
	}
	for tries := 1; ; tries++ {
		if tries == trimmedTries {
			// Rounds keep trimming what the reads need (a backlog larger
			// than the tail keeps): read once more with them held off.
			if err := s.lockApply(ctx); err != nil {
				return 0, nil, fmt.Errorf("slot digests: wait for the apply round in progress: %w", err)
			}
			defer s.applyMu.Unlock()
		}
		if err := ctx.Err(); err != nil {
			return 0, nil, fmt.Errorf("slot digests: %w", err)
		}
		seq, out, err := s.committedDigestsOnce(slots)
		// Trimmed: a round committed after the transaction began; the
		// next transaction starts from it.
		if !errors.Is(err, errTailTrimmed) {
			if err != nil {
				return 0, nil, fmt.Errorf("slot digests: %w", err)
			}
			return seq, out, nil
		}
	}
}

// trimmedTries is how many reads CommittedSlotDigests makes before it
// holds the applier off for the last one.
const trimmedTries = 4

// committedDigestsOnce reads the digests at the committed seq without
// holding s.applyMu: the read transaction's applied seq says where the
// tail's entries take over, and errTailTrimmed says they were gone.
func (s *Store) committedDigestsOnce(slots []int) (seq uint64, out []SlotDigest, err error) {
	s.mu.RLock()
	restores, restoring := s.restores, s.restoring
	s.mu.RUnlock()
	if restoring { // the file holds part of a snapshot, the tail none of it
		return 0, nil, ErrRestoring
	}
	out = make([]SlotDigest, len(slots))
	err = s.view(func(tx *bolt.Tx) error {
		applied, err := metaU64(tx, metaApplied)
		if err != nil {
			return err
		}
		s.mu.RLock()
		seq = s.committed
		err = s.unreadableLocked()
		if err == nil && s.restores != restores {
			// A restore ran since the transaction began: the file it
			// read and the tail do not belong together; read again.
			err = errTailTrimmed
		}
		s.mu.RUnlock()
		if err != nil {
			return err
		}
		if s.hooks.beforeTailRead != nil {
			s.hooks.beforeTailRead()
		}
		pending, err := s.unappliedThrough(applied, seq, slots)
		if err != nil {
			return err
		}
		pending.sort()
		for i, slot := range slots {
			var st slotStats
			var c *bolt.Cursor
			drop, ents := pending.slot(slot)
			if drop == 0 { // a drop leaves nothing of the file's keys
				if st, err = loadSlotStats(tx.Bucket(bucketStats), uint16(slot)); err != nil {
					return err
				}
				if b := slotBucket(tx, slot); b != nil {
					c = b.Cursor()
				}
			}
			for _, e := range ents {
				if c != nil {
					if rec := storedRecord(c, e.key); rec != nil {
						st.remove(e.key, storedValue(rec))
					}
				}
				if !e.del {
					st.add(e.key, e.value)
				}
			}
			out[i] = SlotDigest{Slot: slot, Keys: st.keys, Bytes: st.bytes, Hash: st.hash}
		}
		return nil
	})
	return seq, out, err
}

var bucketStats = []byte("stats")

// slotStats is one slot's digest as the applier keeps it.
type slotStats struct{ keys, bytes, hash uint64 }

// kvHash is a pair's share of its slot's hash (see SlotDigest).
func kvHash(key, value []byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(key)))
	_, _ = d.Write(n[:])
	_, _ = d.Write(key)
	_, _ = d.Write(value)
	return d.Sum64()
}

func (st *slotStats) add(key, value []byte) {
	st.keys++
	st.bytes += uint64(len(key) + len(value))
	st.hash += kvHash(key, value)
}

func (st *slotStats) remove(key, value []byte) {
	st.keys--
	st.bytes -= uint64(len(key) + len(value))
	st.hash -= kvHash(key, value)
}

// Stats records: key the 2-byte big-endian slot, value a record (as for
// keys) of keys (8) | bytes (8) | hash (8); a slot without keys has none.
const statsLen = 3 * 8

func loadSlotStats(b *bolt.Bucket, slot uint16) (slotStats, error) {
	var name [2]byte
	binary.BigEndian.PutUint16(name[:], slot)
	rec := b.Get(name[:])
	if rec == nil {
		return slotStats{}, nil
	}
	v, ok := openRecord(name[:], rec)
	if !ok || len(v) != statsLen {
		return slotStats{}, fmt.Errorf("stats of slot %d: %w", slot, ErrCorrupt)
	}
	return slotStats{keys: binary.BigEndian.Uint64(v), bytes: binary.BigEndian.Uint64(v[8:]), hash: binary.BigEndian.Uint64(v[16:])}, nil
}

func putSlotStats(b *bolt.Bucket, slot uint16, st slotStats) error {
	var name [2]byte
	binary.BigEndian.PutUint16(name[:], slot)
	if st.keys == 0 {
		return b.Delete(name[:])
	}
	var v [statsLen]byte
	binary.BigEndian.PutUint64(v[:], st.keys)
	binary.BigEndian.PutUint64(v[8:], st.bytes)
	binary.BigEndian.PutUint64(v[16:], st.hash)
	rec := make([]byte, recordSize(statsLen))
	encodeRecord(rec, name[:], v[:])
	return b.Put(name[:], rec)
}

// slotsTx changes the keys of slots in one write transaction and keeps
// their stats: a slot's stats are read when it is first touched and written
// back by flush.
type slotsTx struct {
	tx    *bolt.Tx
	stats *bolt.Bucket
	slots map[uint16]*slotWriter
	last  *slotWriter // the applier goes slot by slot
}

// slotWriter is one slot's part of a slotsTx.
type slotWriter struct {
	slot uint16
	st   slotStats
	b    *bolt.Bucket // nil while the slot has no bucket
	// c finds the old values. One cursor repositioned for each key
	// allocates once; Bucket.Get allocates a cursor per call.
	c *bolt.Cursor
	// appended: this transaction's puts to the slot all went past the end
	// of its bucket, as a copied slot's do; inside: one did not.
	appended, inside bool
}

func newSlotsTx(tx *bolt.Tx) *slotsTx {
	return &slotsTx{tx: tx, stats: tx.Bucket(bucketStats), slots: make(map[uint16]*slotWriter)}
}

// writer returns slot's writer, with its bucket created if create.
func (t *slotsTx) writer(slot uint16, create bool) (*slotWriter, error) {
	w := t.last
	if w == nil || w.slot != slot {
		if w = t.slots[slot]; w == nil {
			st, err := loadSlotStats(t.stats, slot)
			if err != nil {
				return nil, err
			}
			name := slotBucketName(int(slot))
			w = &slotWriter{slot: slot, st: st, b: t.tx.Bucket(name[:])}
			t.slots[slot] = w
		}
		t.last = w
	}
	if w.b == nil && create {
		name := slotBucketName(int(slot))
		b, err := t.tx.CreateBucket(name[:])
		if err != nil {
			return nil, fmt.Errorf("slot %d bucket: %w", slot, err)
		}
		w.b = b
	}
	if w.b != nil && w.c == nil {
		w.c = w.b.Cursor()
	}
	return w, nil
}

// old returns the stored record of key, nil if none.
func (w *slotWriter) old(key []byte) []byte { return storedRecord(w.c, key) }

// storedRecord returns the record of key that c's bucket holds, nil if none.
func storedRecord(c *bolt.Cursor, key []byte) []byte {
	if k, rec := c.Seek(key); bytes.Equal(k, key) {
		return rec
	}
	return nil
}

// put stores value under key in slot, encoded into rec (recordSize bytes).
func (t *slotsTx) put(slot uint16, key, value, rec []byte) error {
	w, err := t.writer(slot, true)
	if err != nil {
		return err
	}
	k, old := w.c.Seek(key)
	switch {
	case k == nil:
		w.appended = true
	case bytes.Equal(k, key):
		w.st.remove(key, storedValue(old))
		fallthrough
	default:
		w.inside = true
	}
	encodeRecord(rec, key, value)
	w.st.add(key, value)
	return w.b.Put(key, rec)
}

// delete removes key from slot.
func (t *slotsTx) delete(slot uint16, key []byte) error {
	w, err := t.writer(slot, false)
	if err != nil || w.b == nil {
		return err
	}
	old := w.old(key)
	if old == nil {
		return nil
	}
	w.st.remove(key, storedValue(old))
	return w.b.Delete(key)
}

// drop deletes slot's bucket and zeroes its stats.
func (t *slotsTx) drop(slot uint16) error {
	w, err := t.writer(slot, false)
	if err != nil || w.b == nil {
		return err
	}
	w.st, w.b, w.c = slotStats{}, nil, nil
	w.appended, w.inside = false, false
	name := slotBucketName(int(slot))
	return t.tx.DeleteBucket(name[:])
}

// appendFill is how full the commit packs the leaf pages of a slot whose
// puts all went past its bucket's end. bbolt splits a node at half a page
// by default, so that random inserts find room; a slot copied in key order
// (a migration's snapshot) then took twice the pages, each written, and
// later read, for half its worth.
const appendFill = 1.0

// flush writes the stats of the slots changed and sets how full the
// commit packs their pages.
func (t *slotsTx) flush() error {
	for slot, w := range t.slots {
		if w.b != nil && w.appended && !w.inside {
			w.b.FillPercent = appendFill
		}
		if err := putSlotStats(t.stats, slot, w.st); err != nil {
			return fmt.Errorf("stats of slot %d: %w", slot, err)
		}
	}
	return nil
}

// storedValue is the value of a stored record. A record that fails its
// check still counts with what it holds: the stats then disagree with a
// healthy replica's, which is what a digest is for.
func storedValue(rec []byte) []byte {
	if len(rec) < crcSize {
		return nil
	}
	return rec[crcSize:]
}

// ensureStats computes the stats of every slot in a store that has none
// (one created before they existed) and reports whether it had to.
func ensureStats(tx *bolt.Tx) (bool, error) {
	if tx.Bucket(bucketStats) != nil {
		return false, nil
	}
	b, err := tx.CreateBucket(bucketStats)
	if err != nil {
		return false, err
	}
	c := tx.Cursor()
	for name, v := c.First(); name != nil; name, v = c.Next() {
		slot, ok := slotOfBucketName(name)
		if !ok || v != nil {
			continue
		}
		var st slotStats
		err := tx.Bucket(name).ForEach(func(k, rec []byte) error {
			st.add(k, storedValue(rec))
			return nil
		})
		if err != nil {
			return false, err
		}
		if err := putSlotStats(b, uint16(slot), st); err != nil {
			return false, fmt.Errorf("stats of slot %d: %w", slot, err)
		}
	}
	return true, nil
}
