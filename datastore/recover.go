package datastore

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// recoverLog scans the log: it checks every record, truncates a torn tail
// of the newest segment, rebuilds tail, overlay and epoch state from the
// entries above applied, and opens the newest segment for appending.
func (s *Store) recoverLog() error {
	segs, err := listSegments(s.walDir)
	if err != nil {
		return err
	}
	s.last = s.applied
	var prev uint64 // seq of the previous data record; 0 before the first
	for i := range segs {
		seg := &segs[i]
		seg.last = seg.first - 1
		if err := s.recoverSegment(seg, i == len(segs)-1, &prev); err != nil {
			return err
		}
	}
	if len(segs) == 0 {
		segs = append(segs, segment{first: s.last + 1, last: s.last, path: segmentPath(s.walDir, s.last+1)})
	}
	s.segments = segs
	active := &segs[len(segs)-1]
	f, err := os.OpenFile(active.path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return err
	}
	s.wal, s.walGrows = f, fi.Size() <= active.size
	if active.size == 0 {
		if err := syncDir(s.walDir); err != nil {
			return err
		}
	}
	s.walSize = active.size
	return nil
}

func (s *Store) recoverSegment(seg *segment, newest bool, prev *uint64) error {
	sr, err := openSegment(seg.path, -1)
	if err != nil {
		return err
	}
	defer sr.close()
	for {
		at := sr.off
		rec, err := sr.next()
		if err == io.EOF {
			break
		}
		var torn *tornError
		if errors.As(err, &torn) && newest && (torn.extendsPastEOF || torn.atEOF) {
			s.log.Warn("datastore truncating torn log tail", "file", seg.path, "offset", torn.offset,
				"dropped_bytes", sr.size-torn.offset, "why", torn.why)
			if err := truncateFile(seg.path, torn.offset, s.noSync); err != nil {
				return err
			}
			break
		}
		if err != nil {
			return err
		}
		if err := s.replay(rec, prev); err != nil {
			return fmt.Errorf("log %s offset %d: %w", seg.path, at, err)
		}
		seg.last = max(seg.last, rec.seq)
	}
	seg.size = sr.off
	return nil
}

// replay applies one recovered record to the in-memory state: records at
// or below applied are only checked, epoch markers are replayed always
// (they are idempotent), data entries above applied go to tail and overlay.
func (s *Store) replay(rec record, prev *uint64) error {
	if rec.typ == recEpoch {
		if *prev != 0 && rec.seq != *prev {
			return fmt.Errorf("epoch marker at seq %d after seq %d: %w", rec.seq, *prev, ErrCorrupt)
		}
		s.markEpoch(rec.epoch, rec.seq)
		return nil
	}
	if *prev != 0 && rec.seq != *prev+1 {
		return fmt.Errorf("seq %d follows seq %d: %w", rec.seq, *prev, ErrCorrupt)
	}
	*prev = rec.seq
	if int(rec.slot) >= s.slots {
		return fmt.Errorf("seq %d slot %d of %d: %w", rec.seq, rec.slot, s.slots, ErrCorrupt)
	}
	if rec.seq <= s.applied {
		return nil
	}
	if rec.seq != s.last+1 {
		return fmt.Errorf("seq %d but the applied state ends at seq %d: %w", rec.seq, s.last, ErrCorrupt)
	}
	e := newEntry(rec.slot, rec.typ == recDelete, rec.key, rec.value)
	e.seq, e.epoch = rec.seq, rec.epoch
	s.appendEntry(e.seq, e.epoch)
	s.publishLocked(e)
	return nil
}

// truncateFile cuts path to size bytes and makes that durable.
func truncateFile(path string, size int64, noSync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil && !noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
