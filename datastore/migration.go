package datastore

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Moving slots to another replica group needs two things of the log
// besides puts and deletes: a drop, so that whatever an earlier copy left
// in a slot is gone before a new copy starts, and marks, small named
// values written with the data they describe (how far a copy has come), so
// they are exactly as durable and as replicated as that data.

// DropSlots writes one Drop mutation per slot (see Write) and returns the
// seq of the last. Once it is committed, reads of those slots find nothing
// written before it. Errors: those of Write.
func (s *Store) DropSlots(ctx context.Context, slots []int) (uint64, error) {
	muts := make([]Mutation, len(slots))
	for i, slot := range slots {
		muts[i] = Mutation{Slot: slot, Drop: true}
	}
	seq, err := s.Write(ctx, muts)
	if err != nil {
		return 0, fmt.Errorf("drop slots: %w", err)
	}
	return seq, nil
}

// Mark returns a copy of the committed value of the mark called name (see
// Mutation), nil if none was written. It never waits for the applier.
// Errors: ErrEmptyKey, ErrKeyTooLarge, ErrCorrupt, ErrClosed, ctx.Err().
func (s *Store) Mark(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, err := s.mark([]byte(name))
	if err != nil {
		return nil, fmt.Errorf("mark %s: %w", keyForError([]byte(name)), err)
	}
	return v, nil
}

func (s *Store) mark(name []byte) ([]byte, error) {
	if err := s.checkKV(name, nil, true); err != nil {
		return nil, err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	if e := s.lookupMarkLocked(name, s.committed); e != nil {
		v := append([]byte{}, e.value...)
		s.mu.RUnlock()
		return v, nil
	}
	// As in GetMany: the transaction starts before the applier can forget
	// what it applies next.
	tx, err := s.db.Begin(false)
	s.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	return lookupMark(tx, name)
}

var bucketMarks = []byte("marks")

// lookupMark returns a copy of the stored value of a mark, nil if none.
func lookupMark(tx *bolt.Tx, name []byte) (v []byte, err error) {
	defer recoverBolt(tx.DB().Path(), &err)
	b := tx.Bucket(bucketMarks)
	if b == nil {
		return nil, nil
	}
	rec := b.Get(name)
	if rec == nil {
		return nil, nil
	}
	v, ok := openRecord(name, rec)
	if !ok {
		return nil, fmt.Errorf("stored mark: checksum mismatch: %w", ErrCorrupt)
	}
	return append([]byte{}, v...), nil
}

// putMark stores a mark in the marks bucket.
func putMark(tx *bolt.Tx, name, value []byte) error {
	b, err := tx.CreateBucketIfNotExists(bucketMarks)
	if err != nil {
		return err
	}
	rec := make([]byte, recordSize(len(value)))
	encodeRecord(rec, name, value)
	return b.Put(name, rec)
}

// opSlot is the slot recorded for a mutation: marks belong to no slot.
func opSlot(slot int, mark bool) uint16 {
	if mark {
		return 0
	}
	return uint16(slot)
}
