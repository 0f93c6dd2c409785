package datastore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Stats describes the store at one instant. The zero value means an empty
// store.
type Stats struct {
	Keys         uint64         // keys in the data file (bbolt), part of a round in progress included; excludes the unapplied overlay
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
	Applies      uint64 // apply rounds since Open
}

// Stats counts the keys of every slot in the data file (walking each
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
	if st.FileBytes, st.WALBytes, err = s.diskBytes(segs); err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	return st, nil
}

// DiskBytes returns the sizes of the data file and of the log segments
// (as Stats does) without walking the data: cheap enough for every scrape.
func (s *Store) DiskBytes() (file, wal int64, err error) {
	s.mu.RLock()
	segs := slices.Clone(s.segments)
	s.mu.RUnlock()
	return s.diskBytes(segs)
}

func (s *Store) diskBytes(segs []segment) (file, wal int64, err error) {
	fi, err := os.Stat(filepath.Join(s.dir, dataFile))
	if err != nil {
		return 0, 0, err
	}
	for _, seg := range segs {
		if fi, err := os.Stat(seg.path); err == nil {
			wal += fi.Size()
		}
	}
	return fi.Size(), wal, nil
}
