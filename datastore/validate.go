package datastore

import (
	"fmt"
)

func (s *Store) checkKey(slot int, key []byte) error {
	if err := s.checkSlot(slot); err != nil {
		return err
	}
	return s.checkKV(key, nil, true)
}

// Validate runs the checks Write does on one key and value, so a server can
// refuse a request before queueing it. Errors: ErrEmptyKey, ErrKeyTooLarge,
// ErrValueTooLarge, each wrapped with the sizes.
func (s *Store) Validate(key, value []byte) error {
	return s.checkKV(key, value, false)
}

func (s *Store) validate(slot int, key, value []byte, del bool) error {
	if err := s.checkSlot(slot); err != nil {
		return err
	}
	return s.checkKV(key, value, del)
}

// validateOp checks one mutation or log entry: a put or delete as validate
// does, a drop its slot, a mark its name (the key) and value.
func (s *Store) validateOp(slot int, key, value []byte, del, drop, mark bool) error {
	if del && (drop || mark) || drop && mark {
		return fmt.Errorf("more than one of delete, drop and mark: %w", ErrBadMutation)
	}
	switch {
	case drop:
		if len(key) != 0 || len(value) != 0 {
			return fmt.Errorf("a drop of slot %d carries a key or value: %w", slot, ErrBadMutation)
		}
		return s.checkSlot(slot)
	case mark:
		return s.checkKV(key, value, false)
	}
	return s.validate(slot, key, value, del)
}

func (s *Store) checkSlot(slot int) error {
	if slot < 0 || slot >= s.slots {
		return fmt.Errorf("slot %d outside [0, %d): %w", slot, s.slots, ErrBadSlot)
	}
	return nil
}

func (s *Store) checkSlots(slots []int) error {
	for _, slot := range slots {
		if err := s.checkSlot(slot); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) checkKV(key, value []byte, del bool) error {
	if len(key) == 0 {
		return ErrEmptyKey
	}
	if len(key) > s.maxKey {
		return fmt.Errorf("key of %d bytes, limit %d: %w", len(key), s.maxKey, ErrKeyTooLarge)
	}
	if !del && len(value) > s.maxValue {
		return fmt.Errorf("value of %d bytes, limit %d: %w", len(value), s.maxValue, ErrValueTooLarge)
	}
	return nil
}
