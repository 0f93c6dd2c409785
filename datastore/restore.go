package datastore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Bounds of one restore transaction.
const (
	maxRestoreEntries = 50_000
	maxRestoreBytes   = 32 << 20
)

// TruncateAfter removes the log entries after seq, as a follower does when
// its log diverged from its new primary's (docs/replication.md, "Catch-up"): the log
// file is cut at the record boundary and fsynced, later segments are
// deleted, and the entries leave memory too. Epochs that started after seq
// stay in the epoch map as empty epochs starting at seq+1, and Epoch() does
// not go down, so fencing holds. A seq at or past LastSeq() changes nothing.
// The truncation is queued with the writes, so writes queued before it are
// written first.
//
// Errors: ErrTruncateCommitted if seq < CommittedSeq() (those entries may be
// applied and acknowledged); ErrClosed, ErrRestoring, ErrFailed (also when
// the truncation itself fails to reach the disk); ctx.Err() if ctx ends
// while it waits (it may still happen).
func (s *Store) TruncateAfter(ctx context.Context, seq uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{kind: kindCall, call: func() error { return s.truncateAfter(seq) }}
	if _, err := s.submit(ctx, r); err != nil {
		return fmt.Errorf("truncate log after seq %d: %w", seq, err)
	}
	return nil
}

// truncateAfter runs on the committer, with the applier held off.
func (s *Store) truncateAfter(seq uint64) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	if seq < s.committed {
		err := fmt.Errorf("committed seq is %d: %w", s.committed, ErrTruncateCommitted)
		s.mu.Unlock()
		return err
	}
	if seq >= s.last {
		s.mu.Unlock()
		return nil
	}
	// From here SetCommitted cannot commit what is being removed.
	s.durable = min(s.durable, seq)
	if !s.auto {
		s.target = s.committed
	}
	segs := slices.Clone(s.segments)
	s.mu.Unlock()

	i := len(segs) - 1
	for i > 0 && segs[i].first > seq+1 {
		i--
	}
	off, kept, err := cutPoint(segs[i], seq)
	if err != nil {
		return s.setFailed("truncate: find cut point", err)
	}
	if err := s.cutLog(segs, i, off); err != nil {
		return s.setFailed("truncate: cut log", err)
	}
	s.mu.Lock()
	dropped := 0
	for ; dropped < s.tail.len(); dropped++ {
		e := s.tail.at(s.tail.len() - 1 - dropped)
		if e.seq <= seq {
			break
		}
		s.dropNewestLocked(e)
		s.tailBytes -= e.cost()
		s.overlayBytes -= e.cost()
	}
	s.tail.dropBack(dropped)
	s.last = seq
	s.epochs = clampEpochs(s.epochs, seq+1)
	s.logEpoch = epochAt(s.epochs, seq)
	segs[i].last, segs[i].size = kept, off
	s.segments = segs[:i+1]
	epoch, epochs := s.epoch, s.epochs
	s.notifyLocked()
	s.mu.Unlock()
	err = s.db.Update(func(tx *bolt.Tx) error { return putEpochs(tx, epoch, epochs) })
	if err != nil {
		return s.setFailed("truncate: persist epoch map", err)
	}
	s.log.Info("datastore truncated log", "after_seq", seq, "file", segs[i].path, "offset", off)
	return nil
}

// cutPoint finds the offset of the first record after seq in seg, and the
// highest seq of the records before it.
func cutPoint(seg segment, seq uint64) (off int64, kept uint64, err error) {
	sr, err := openSegment(seg.path, seg.size)
	if err != nil {
		return 0, 0, err
	}
	defer sr.close()
	kept = seg.first - 1
	for {
		at := sr.off
		rec, err := sr.next()
		if err == io.EOF {
			return at, kept, nil
		}
		if err != nil {
			return 0, 0, err
		}
		if rec.seq > seq {
			return at, kept, nil
		}
		kept = max(kept, rec.seq)
	}
}

// cutLog truncates segment i at off, deletes the segments after it and
// makes it the active segment.
func (s *Store) cutLog(segs []segment, i int, off int64) error {
	if i != len(segs)-1 {
		if err := s.wal.Close(); err != nil {
			return err
		}
		s.wal = nil
		for _, seg := range segs[i+1:] {
			if err := os.Remove(seg.path); err != nil {
				return err
			}
		}
		f, err := os.OpenFile(segs[i].path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		s.wal = f
	}
	if err := s.wal.Truncate(off); err != nil {
		return err
	}
	s.walSize, s.walGrows = off, true
	if err := s.sync(); err != nil {
		return err
	}
	return syncDir(s.walDir)
}

// setFailed makes the store fail-stop — every later write is refused —
// and returns the error to report.
func (s *Store) setFailed(what string, err error) error {
	err = fmt.Errorf("%s: %w: %w", what, ErrFailed, err)
	s.log.Error("datastore failed, refusing writes", "err", err)
	s.mu.Lock()
	if s.failErr == nil {
		s.failErr = err
	}
	s.notifyLocked()
	s.mu.Unlock()
	return err
}

// Restorer loads a snapshot into a store whose data and log Restore
// discarded. Put the pairs, then Finish with the snapshot's seq and epoch
// map, or Abort. Its methods are not safe for concurrent use. The zero value
// is not usable; get one from Restore.
type Restorer struct {
	s       *Store
	pending []entry
	bytes   int
	done    bool
}

// errRestorerDone is returned by a Restorer used after Finish or Abort.
var errRestorerDone = fmt.Errorf("restorer already finished: %w", ErrClosed)

// Restore discards all local data and the whole log, for a follower that
// is new or too far behind to catch up from its primary's log, and returns
// a Restorer to load a snapshot with. Writes, SetEpoch, TruncateAfter and
// Snapshot are refused with ErrRestoring until the Restorer finishes; reads
// see the partly loaded data meanwhile. Epoch() is kept (fencing), the
// epoch map and LastSeq, CommittedSeq and AppliedSeq go to 0 until Finish.
// A crash before Finish leaves an empty store at seq 0 after Open.
//
// ctx bounds only the start: once the discard is queued, Restore waits for
// it. Errors: ErrRestoring (a restore already runs), ErrClosed, ErrFailed,
// ctx.Err().
func (s *Store) Restore(ctx context.Context) (*Restorer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if err := s.refusal(&request{}); err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("restore: %w", err)
	}
	s.restoring = true
	s.mu.Unlock()
	r := &request{kind: kindCall, restore: true, call: s.discardAll}
	if _, err := s.submit(context.WithoutCancel(ctx), r); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	s.log.Info("datastore restore started", "dir", s.dir)
	return &Restorer{s: s}, nil
}

// discardAll runs on the committer, with the applier held off. The
// restoring flag goes to the bbolt file first, so a crash before the log
// files are gone still discards them on Open.
func (s *Store) discardAll() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put(metaRestoring, encodeMetaU64(metaRestoring, 1)); err != nil {
			return err
		}
		if err := wipeSlots(tx); err != nil {
			return err
		}
		return putMeta(tx, metaApplied, 0)
	})
	if err != nil {
		return s.setFailed("restore: discard data", err)
	}
	if err := s.wal.Close(); err != nil {
		return s.setFailed("restore: close log", err)
	}
	s.wal = nil
	if err := s.removeSegments(); err != nil {
		return s.setFailed("restore: delete log", err)
	}
	s.mu.Lock()
	s.tail.reset()
	s.tailBytes = 0
	s.overlay, s.overlayBytes = make(map[uint64]uint64), 0
	s.logState = logState{epoch: s.epoch}
	s.durable, s.committed, s.applied, s.target = 0, 0, 0, 0
	s.segments = nil
	s.notifyLocked()
	s.mu.Unlock()
	return nil
}

// Put stores one pair of the snapshot; pairs are written in large bbolt
// transactions. key and value are copied. Errors: the validation errors of
// Write, ErrClosed (also after Finish or Abort), bbolt errors.
func (r *Restorer) Put(slot int, key, value []byte) error {
	if r.done {
		return errRestorerDone
	}
	if err := r.s.validate(slot, key, value, false); err != nil {
		return fmt.Errorf("restore: slot %d key %s: %w", slot, keyForError(key), err)
	}
	r.pending = append(r.pending, newEntry(uint16(slot), false, key, value))
	r.bytes += len(key) + len(value)
	if len(r.pending) >= maxRestoreEntries || r.bytes >= maxRestoreBytes {
		return r.flush()
	}
	return nil
}

func (r *Restorer) flush() error {
	if len(r.pending) == 0 {
		return nil
	}
	err := r.s.update(func(tx *bolt.Tx) error {
		buckets := make(map[uint16]*bolt.Bucket)
		for i := range r.pending {
			e := &r.pending[i]
			b, err := slotBucketForWrite(tx, buckets, e.slot)
			if err != nil {
				return err
			}
			rec := make([]byte, recordSize(len(e.value)))
			encodeRecord(rec, e.key, e.value)
			if err := b.Put(e.key, rec); err != nil {
				return fmt.Errorf("slot %d key %s: %w", e.slot, keyForError(e.key), err)
			}
		}
		return nil
	})
	clear(r.pending)
	r.pending, r.bytes = r.pending[:0], 0
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// update runs fn in a write transaction unless the store is closed.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	err := s.db.Update(fn)
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Finish completes the restore: the store holds the snapshot taken at seq,
// with the given epoch map (sorted by epoch; start seqs above seq+1 are
// lowered to seq+1). LastSeq, DurableSeq, CommittedSeq and AppliedSeq all
// become seq, the log restarts at seq+1 (ReadLog of older seqs returns
// ErrLogTrimmed), and writes are accepted again. Errors: ErrClosed (also
// after Finish or Abort), ErrFailed, bbolt and I/O errors.
func (r *Restorer) Finish(seq uint64, epochs []EpochStart) error {
	if r.done {
		return errRestorerDone
	}
	if err := r.flush(); err != nil {
		return err
	}
	epochs = slices.Clone(epochs)
	slices.SortFunc(epochs, func(a, b EpochStart) int { return cmp.Compare(a.Epoch, b.Epoch) })
	return r.end(seq, clampEpochs(epochs, seq+1), false)
}

// Abort ends the restore and discards what was loaded: the store is left
// empty at seq 0 with an empty epoch map (Epoch() is kept), accepting
// writes again. Errors as for Finish.
func (r *Restorer) Abort() error {
	if r.done {
		return errRestorerDone
	}
	clear(r.pending)
	r.pending = nil
	return r.end(0, nil, true)
}

func (r *Restorer) end(seq uint64, epochs []EpochStart, wipe bool) error {
	r.done = true
	s := r.s
	epoch := s.Epoch()
	if n := len(epochs); n > 0 {
		epoch = max(epoch, epochs[n-1].Epoch)
	}
	err := s.update(func(tx *bolt.Tx) error {
		if wipe {
			if err := wipeSlots(tx); err != nil {
				return err
			}
		}
		if err := putMeta(tx, metaApplied, seq); err != nil {
			return err
		}
		if err := putEpochs(tx, epoch, epochs); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(metaRestoring)
	})
	if err != nil {
		return fmt.Errorf("restore: finish at seq %d: %w", seq, err)
	}
	req := &request{kind: kindCall, restore: true, call: func() error { return s.restartLog(seq, epoch, epochs) }}
	if _, err := s.submit(context.Background(), req); err != nil {
		return fmt.Errorf("restore: finish at seq %d: %w", seq, err)
	}
	s.log.Info("datastore restore finished", "seq", seq, "epoch", epoch, "aborted", wipe)
	return nil
}

// restartLog runs on the committer: the log starts over after seq.
func (s *Store) restartLog(seq, epoch uint64, epochs []EpochStart) error {
	path := segmentPath(s.walDir, seq+1)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return s.setFailed("restore: create log", err)
	}
	if err := syncDir(s.walDir); err != nil {
		_ = f.Close()
		return s.setFailed("restore: create log", err)
	}
	s.wal, s.walSize, s.walGrows = f, 0, true
	s.mu.Lock()
	s.logState = logState{last: seq, epoch: epoch, logEpoch: epochAt(epochs, seq), epochs: epochs}
	s.durable, s.committed, s.applied, s.target = seq, seq, seq, seq
	if s.auto {
		s.target = math.MaxUint64
	}
	s.segments = []segment{{first: seq + 1, last: seq, path: path}}
	s.restoring = false
	s.notifyLocked()
	s.mu.Unlock()
	return nil
}
