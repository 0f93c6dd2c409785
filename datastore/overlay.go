package datastore

import (
	"bytes"
	"hash/maphash"
)

// The overlay answers reads of entries written but not yet applied to
// bbolt. It is an index over the tail: a map from a hash of slot and key to
// the seq of the newest unapplied entry with that hash, and in each entry
// the seq of the previous one with the same hash. A lookup walks that chain
// from the newest entry down to the applied seq, skipping entries above the
// committed seq and entries of other keys that share the hash. The map holds
// neither keys nor pointers: publishing costs two integer map operations and
// no allocation, the collector does not scan it, and forgetting what the
// applier applied is one lookup per key. Marks are indexed the same way,
// under a hash of their own. A drop has no key: drops lists each slot's
// unapplied drops, and a lookup ignores what came before the newest
// committed one.

// keyHash hashes slot and key for the overlay.
func (s *Store) keyHash(slot uint16, key []byte) uint64 {
	if s.hooks.keyHash != nil {
		return s.hooks.keyHash(slot, key)
	}
	return maphash.Bytes(s.hashSeed, key) ^ uint64(slot)*0x9e3779b97f4a7c15
}

// markHashSalt sets the overlay hashes of marks apart from those of keys.
const markHashSalt = 0x6d61726b6d61726b

// markHash hashes a mark's name for the overlay.
func (s *Store) markHash(name []byte) uint64 { return s.keyHash(0, name) ^ markHashSalt }

// entryHash is the overlay hash of a put, delete or mark.
func (s *Store) entryHash(e *entry) uint64 {
	if e.mark {
		return s.markHash(e.key)
	}
	return s.keyHash(e.slot, e.key)
}

// publishLocked adds a written entry to the tail and the overlay. s.mu must
// be held for writing.
func (s *Store) publishLocked(e entry) {
	if e.drop {
		s.drops[e.slot] = append(s.drops[e.slot], e.seq)
	} else {
		e.hash = s.entryHash(&e)
		e.prev = s.overlay[e.hash]
		s.overlay[e.hash] = e.seq
	}
	s.tail.push(e)
	c := e.cost()
	s.tailBytes += c
	s.overlayBytes += c
}

// lookupOverlayLocked returns the newest entry of the key at or below
// committed that bbolt does not hold yet: a put, a delete, or a drop of
// its slot newer than those; nil if none. s.mu must be held.
func (s *Store) lookupOverlayLocked(slot uint16, key []byte, committed uint64) *entry {
	var drop uint64
	if len(s.drops) > 0 {
		drop = s.committedDropLocked(slot, committed)
	}
	if e := s.chainLocked(s.keyHash(slot, key), slot, key, false, max(s.applied, drop), committed); e != nil {
		return e
	}
	if drop > 0 {
		return s.tail.bySeq(drop)
	}
	return nil
}

// lookupMarkLocked returns the newest entry of the mark at or below
// committed that bbolt does not hold yet, or nil. s.mu must be held.
func (s *Store) lookupMarkLocked(name []byte, committed uint64) *entry {
	return s.chainLocked(s.markHash(name), 0, name, true, s.applied, committed)
}

// chainLocked walks the overlay chain of hash h from its newest entry down
// to above seq floor and returns the first entry at or below committed of
// the key (or, with mark, the mark) in slot, or nil. s.mu must be held.
func (s *Store) chainLocked(h uint64, slot uint16, key []byte, mark bool, floor, committed uint64) *entry {
	for seq := s.overlay[h]; seq > floor; {
		e := s.tail.bySeq(seq)
		if e == nil {
			return nil // not reached: the tail holds every unapplied entry
		}
		if seq <= committed && e.mark == mark && e.slot == slot && bytes.Equal(e.key, key) {
			return e
		}
		seq = e.prev
	}
	return nil
}

// committedDropLocked returns the seq of the newest drop of slot above the
// applied seq and at or below committed, 0 if none. s.mu must be held.
func (s *Store) committedDropLocked(slot uint16, committed uint64) uint64 {
	seqs := s.drops[slot]
	for i := len(seqs) - 1; i >= 0; i-- {
		if seqs[i] <= committed {
			if seqs[i] > s.applied {
				return seqs[i]
			}
			break
		}
	}
	return 0
}

// forgetAppliedLocked drops the overlay's chain of an applied entry when it
// is the newest of its hash (then every entry of the chain is applied).
// s.mu must be held for writing.
func (s *Store) forgetAppliedLocked(e *entry) {
	if e.drop {
		// Older drops of the slot were applied with it.
		seqs := s.drops[e.slot]
		n := 0
		for n < len(seqs) && seqs[n] <= e.seq {
			n++
		}
		if n == len(seqs) {
			delete(s.drops, e.slot)
		} else {
			s.drops[e.slot] = seqs[n:]
		}
		return
	}
	if s.overlay[e.hash] == e.seq {
		delete(s.overlay, e.hash)
	}
}

// dropNewestLocked takes the tail's newest entry e out of the overlay before
// a truncation drops it. s.mu must be held for writing.
func (s *Store) dropNewestLocked(e *entry) {
	if e.drop {
		if seqs := s.drops[e.slot]; len(seqs) > 1 {
			s.drops[e.slot] = seqs[:len(seqs)-1]
		} else {
			delete(s.drops, e.slot)
		}
		return
	}
	if s.overlay[e.hash] != e.seq {
		return
	}
	if e.prev > s.applied {
		s.overlay[e.hash] = e.prev
	} else {
		delete(s.overlay, e.hash)
	}
}
