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
// applier applied is one lookup per key.

// keyHash hashes slot and key for the overlay.
func (s *Store) keyHash(slot uint16, key []byte) uint64 {
	if s.hooks.keyHash != nil {
		return s.hooks.keyHash(slot, key)
	}
	return maphash.Bytes(s.hashSeed, key) ^ uint64(slot)*0x9e3779b97f4a7c15
}

// publishLocked adds a written entry to the tail and the overlay. s.mu must
// be held for writing.
func (s *Store) publishLocked(e entry) {
	e.hash = s.keyHash(e.slot, e.key)
	e.prev = s.overlay[e.hash]
	s.overlay[e.hash] = e.seq
	s.tail.push(e)
	c := e.cost()
	s.tailBytes += c
	s.overlayBytes += c
}

// lookupOverlayLocked returns the newest entry of the key at or below
// committed that bbolt does not hold yet, or nil. s.mu must be held.
func (s *Store) lookupOverlayLocked(slot uint16, key []byte, committed uint64) *entry {
	for seq := s.overlay[s.keyHash(slot, key)]; seq > s.applied; {
		e := s.tail.bySeq(seq)
		if e == nil {
			return nil // not reached: the tail holds every unapplied entry
		}
		if seq <= committed && e.slot == slot && bytes.Equal(e.key, key) {
			return e
		}
		seq = e.prev
	}
	return nil
}

// forgetAppliedLocked drops the overlay's chain of an applied entry when it
// is the newest of its hash (then every entry of the chain is applied).
// s.mu must be held for writing.
func (s *Store) forgetAppliedLocked(e *entry) {
	if s.overlay[e.hash] == e.seq {
		delete(s.overlay, e.hash)
	}
}

// dropNewestLocked takes the tail's newest entry e out of the overlay before
// a truncation drops it. s.mu must be held for writing.
func (s *Store) dropNewestLocked(e *entry) {
	if s.overlay[e.hash] != e.seq {
		return
	}
	if e.prev > s.applied {
		s.overlay[e.hash] = e.prev
	} else {
		delete(s.overlay, e.hash)
	}
}
