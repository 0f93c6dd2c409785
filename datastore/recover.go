package datastore

import (
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
		// A segment was full when the next one began: one that ends early
		// lost records at its end (zeros read as its clean end).
		if i+1 < len(segs) && seg.last+1 < segs[i+1].first {
			return fmt.Errorf("log %s offset %d: ends at seq %d but the next segment begins at seq %d: %w",
				seg.path, seg.size, seg.last, segs[i+1].first, ErrCorrupt)
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
	// After a crash of the process the last commits may still be in the
	// page cache only. They count as durable from here on, and the first
	// commit records written after Open say so.
	if err := s.sync(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("fdatasync log %s: %w", active.path, err)
	}
	s.wal, s.walGrows = f, fi.Size() <= active.size
	if active.size == 0 {
		if err := syncDir(s.walDir); err != nil {
			return err
		}
	}
	s.walSize = active.size
	s.synced.Store(active.size)
	return nil
}

// recoverSegment replays one segment's records, a commit at a time: the
// records of a commit are replayed once its commit record matched them.
// Damage that looks like a torn write, in the newest segment, that no
// later commit record vouches for (finalTorn) is a commit cut short by a
// crash before its fdatasync returned, so never acknowledged; so was any
// commit after it, written while that fdatasync ran: they are cut off with
// a warning. Any other damage is refused with ErrCorrupt, naming file and
// offset.
func (s *Store) recoverSegment(seg *segment, newest bool, prev *uint64) error {
	sr, err := openSegment(seg.path, -1)
	if err != nil {
		return err
	}
	defer sr.close()
	type pendingRecord struct {
		at  int64
		rec record
	}
	var pending []pendingRecord
	for {
		at := sr.off
		rec, err := sr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			tail, torn, refused := sr.finalTorn(err, newest)
			if !torn {
				return refused
			}
			// An applied entry was committed, hence acknowledged; so
			// were those of a round the file holds part of.
			held := max(s.applied, s.applyingTo)
			for _, p := range pending {
				if p.rec.typ != recEpoch && p.rec.seq <= held {
					return fmt.Errorf("%w; its commit holds seq %d, which %s holds", err, p.rec.seq, dataFile)
				}
			}
			if tail.first != 0 && tail.first <= held {
				return fmt.Errorf("%w; a commit after it holds seq %d, which %s holds", err, tail.first, dataFile)
			}
			s.log.Warn("datastore dropping the torn tail of the log (its fdatasync never returned, so it was never acknowledged)",
				"file", seg.path, "offset", sr.commitStart, "why", err, "dropped_bytes", max(tail.dataEnd-sr.commitStart, 0),
				"dropped_records", len(pending), "dropped_later_commits", tail.commits)
			if err := truncateFile(seg.path, sr.commitStart, s.noSync); err != nil {
				return err
			}
			break
		}
		if sr.inCommit() {
			// Keep what replay needs until the commit record vouches for it.
			if !rec.isData() || rec.seq <= s.applied {
				rec.key, rec.value = nil, nil
			} else {
				e := rec.entry()
				rec.key, rec.value = e.key, e.value
			}
			pending = append(pending, pendingRecord{at, rec})
			continue
		}
		for _, p := range pending {
			if err := s.replay(p.rec, prev); err != nil {
				return fmt.Errorf("log %s offset %d: %w", seg.path, p.at, err)
			}
			seg.last = max(seg.last, p.rec.seq)
		}
		pending = pending[:0]
		if rec.typ == recCommit {
			continue
		}
		if err := s.replay(rec, prev); err != nil {
			return fmt.Errorf("log %s offset %d: %w", seg.path, at, err)
		}
		seg.last = max(seg.last, rec.seq)
	}
	seg.size = sr.commitStart
	return nil
}

// replay applies one recovered record to the in-memory state: tags are
// collected (TakeLogTags), records at or below applied are only checked, epoch markers are replayed always
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
	if !rec.tag.IsZero() {
		s.logTags.add(TagSeq{Tag: rec.tag, Seq: rec.seq})
	}
	if rec.seq <= s.applied {
		return nil
	}
	if rec.seq != s.last+1 {
		return fmt.Errorf("seq %d but the applied state ends at seq %d: %w", rec.seq, s.last, ErrCorrupt)
	}
	e := rec.entry()
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
