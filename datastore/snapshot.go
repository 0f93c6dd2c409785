package datastore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Snapshot calls fn for every key of the given slots as of everything
// committed when it was called, slot by slot in the given order and in key
// order within a slot, and returns the committed seq the copy reflects:
// the copy plus the log entries after that seq reproduce the store exactly
// (docs/replication.md, "Catch-up"). It does not wait for the applier: the
// keys come from one bbolt read transaction, merged with the committed
// entries not applied yet, read from memory. A copy started right after a
// burst of writes so neither waits for the round that applies them nor
// hurries it. The caller then ships the log from seq+1 with ReadLog; while
// Snapshot runs, the log segments holding those entries are pinned (not
// deleted), but after it returns they are kept only as
// Options.LogRetention says, so the caller should start reading promptly.
// key and value alias the file or the log and are valid only until fn
// returns. The read transaction also keeps the pages it reads from being
// reused; the file grows meanwhile: a slow reader wants SnapshotInSteps.
//
// Errors: the first error of fn, ctx.Err() (checked every 1024 keys),
// ErrBadSlot, ErrCorrupt (naming slot and key; fn has then seen only the
// keys before it), ErrRestoring, ErrClosed.
func (s *Store) Snapshot(ctx context.Context, slots []int, fn func(slot int, key, value []byte) error) (seq uint64, err error) {
	return s.snapshot(ctx, slots, 0, nil, fn, nil)
}

// SnapshotCut is Snapshot that first calls begin, when not nil, with the
// seq the copy reflects, before any fn: for a copy whose header names its
// log position (backups). An error from begin ends it as fn's would.
func (s *Store) SnapshotCut(ctx context.Context, slots []int, begin func(seq uint64) error, fn func(slot int, key, value []byte) error) (seq uint64, err error) {
	return s.snapshot(ctx, slots, 0, begin, fn, nil)
}

// SnapshotInSteps is Snapshot for a reader that may be slow (a paced
// migration copy): it reads in steps, each from a new read transaction,
// and calls between (when not nil) before every step but the first,
// outside any transaction, for the waits of a slow reader. A step ends once
// step has passed (checked after each key) or once fn returns ErrStepEnd.
// One transaction held for the whole of a slow copy keeps every page freed
// meanwhile from being reused, so the file grows by all the writes of that
// time, and once it outgrows its memory map the remap waits for the
// transaction: every write of the node stalled, for seconds.
// The copy is then not one cut: each key is as some committed seq at or
// after the returned one left it, so only the copy followed by the log
// from seq+1 reproduces the store (whatever changed a key between two
// steps is in that log). A migration's import is exactly that. The log is
// pinned from seq on until it returns, as for Snapshot.
func (s *Store) SnapshotInSteps(ctx context.Context, slots []int, step time.Duration, fn func(slot int, key, value []byte) error, between func() error) (seq uint64, err error) {
	return s.snapshot(ctx, slots, step, nil, fn, between)
}

// snapshotCursor is where a snapshot stands between its steps.
type snapshotCursor struct {
	slots []int
	// i indexes the slot being read; after is the last key read in it, nil
	// before its first.
	i     int
	after []byte
	// pinned: the first step pinned the log at pin; seq is the position the
	// copy reflects (at least).
	pinned   bool
	pin, seq uint64
	n        int // keys read, for the ctx checks
}

// snapshot does the work of Snapshot (step 0: one transaction),
// SnapshotCut and SnapshotInSteps.
func (s *Store) snapshot(ctx context.Context, slots []int, step time.Duration, begin func(seq uint64) error, fn func(slot int, key, value []byte) error, between func() error) (uint64, error) {
	if err := s.checkSlots(slots); err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	c := &snapshotCursor{slots: slots}
	defer func() {
		if c.pinned {
			s.mu.Lock()
			if s.pins[c.pin]--; s.pins[c.pin] == 0 {
				delete(s.pins, c.pin)
			}
			s.mu.Unlock()
		}
	}()
	for {
		if err := s.snapshotStep(ctx, c, step, begin, fn); err != nil {
			return 0, fmt.Errorf("snapshot: %w", err)
		}
		if c.i == len(slots) {
			return c.seq, nil
		}
		begin = nil
		if between != nil {
			if err := between(); err != nil {
				return 0, fmt.Errorf("snapshot: %w", err)
			}
		}
	}
}

// snapshotStep reads from where c stands, from one read transaction, until
// the slots are done or step (when not 0) has passed.
func (s *Store) snapshotStep(ctx context.Context, c *snapshotCursor, step time.Duration, begin func(seq uint64) error, fn func(slot int, key, value []byte) error) error {
	if c.pinned {
		// A later step need not hold the applier off (and wait for its
		// round): its transaction's applied seq names the entries to merge,
		// still in the tail unless a round applied and trimmed them since.
		err := s.view(func(tx *bolt.Tx) error {
			applied, err := metaU64(tx, metaApplied)
			if err != nil {
				return err
			}
			s.mu.RLock()
			err, want := s.unreadableLocked(), s.committed
			s.mu.RUnlock()
			if err != nil {
				return err
			}
			pending, err := s.unappliedThrough(applied, want, c.slots[c.i:])
			if err != nil {
				return err
			}
			return c.read(ctx, tx, &pending, step, nil, fn)
		})
		if !errors.Is(err, errTailTrimmed) {
			return err
		}
	}
	// No round commits while the entries after the applied seq are copied
	// and the read transaction starts: then those entries are still in the
	// tail and the transaction holds exactly the applied seq. Restores and
	// truncations wait too.
	if err := s.lockApply(ctx); err != nil {
		return fmt.Errorf("wait for the apply round in progress: %w", err)
	}
	held := true
	release := func() {
		if held {
			held = false
			s.applyMu.Unlock()
		}
	}
	defer release()
	s.mu.Lock()
	if err := s.unreadableLocked(); err != nil {
		s.mu.Unlock()
		return err
	}
	pin, want := s.applied, s.committed
	if !c.pinned {
		s.pins[pin]++
		c.pinned, c.pin, c.seq = true, pin, max(pin, want)
	}
	s.mu.Unlock()
	pending, err := s.unappliedThrough(pin, want, c.slots[c.i:])
	if err != nil { // the applier is held off: they must be there
		return fmt.Errorf("committed %v: %w", err, ErrCorrupt)
	}
	return s.view(func(tx *bolt.Tx) error {
		applied, err := metaU64(tx, metaApplied)
		if err != nil {
			return err
		}
		release()
		if applied != pin {
			return fmt.Errorf("the data file is at seq %d, the applier at %d: %w", applied, pin, ErrCorrupt)
		}
		return c.read(ctx, tx, &pending, step, begin, fn)
	})
}

// read reads from where c stands in tx, merging pending, until the slots
// are done or step (when not 0) has passed; it calls begin, when not nil,
// before any fn.
func (c *snapshotCursor) read(ctx context.Context, tx *bolt.Tx, pending *unapplied, step time.Duration, begin func(seq uint64) error, fn func(slot int, key, value []byte) error) error {
	var deadline time.Time
	if step > 0 {
		deadline = time.Now().Add(step)
	}
	pending.sort()
	if begin != nil {
		if err := begin(c.seq); err != nil {
			return err
		}
	}
	for ; c.i < len(c.slots); c.i, c.after = c.i+1, nil {
		slot := c.slots[c.i]
		drop, ents := pending.slot(slot)
		var cur *bolt.Cursor
		if b := slotBucket(tx, slot); b != nil && drop == 0 {
			cur = b.Cursor()
		}
		var k, rec []byte
		if c.after != nil {
			j, found := slices.BinarySearchFunc(ents, c.after, func(e *entry, key []byte) int { return bytes.Compare(e.key, key) })
			if found {
				j++
			}
			ents = ents[j:]
			if cur != nil {
				if k, rec = cur.Seek(c.after); bytes.Equal(k, c.after) {
					k, rec = cur.Next()
				}
			}
		} else if cur != nil {
			k, rec = cur.First()
		}
		for k != nil || len(ents) > 0 {
			if c.n++; c.n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			order := -1 // the next unapplied entry comes first
			if k != nil {
				order = 1
				if len(ents) > 0 {
					order = bytes.Compare(ents[0].key, k)
				}
			}
			var read []byte // the key this turn read
			var err error   // fn's
			if order <= 0 {
				e := ents[0]
				ents = ents[1:]
				if order == 0 {
					k, rec = cur.Next() // the file's older version
				}
				read = e.key
				if !e.del {
					err = fn(slot, e.key, e.value)
				}
			} else {
				v, ok := openRecord(k, rec)
				if !ok {
					return corruptRecord(slot, k, "checksum mismatch")
				}
				err = fn(slot, k, v)
				read = k
				k, rec = cur.Next()
			}
			switch {
			case step > 0 && (errors.Is(err, ErrStepEnd) || err == nil && time.Now().After(deadline)):
				c.after = bytes.Clone(read)
				return nil
			case err != nil:
				return err
			}
		}
	}
	return nil
}

// unreadableLocked says why the data file and the tail cannot be read
// together now (ErrClosed, ErrRestoring), nil if they can. s.mu is held.
func (s *Store) unreadableLocked() error {
	switch {
	case s.closed:
		return ErrClosed
	case s.restoring:
		return ErrRestoring
	}
	return nil
}

// lockApply takes s.applyMu, waiting at most as long as ctx allows: a
// round may wait for a long read transaction (a remap), and a copy given
// up must not wait behind it.
func (s *Store) lockApply(ctx context.Context) error {
	if s.applyMu.TryLock() {
		return nil
	}
	locked := make(chan struct{})
	go func() { // ends once it has the lock; hands it over or gives it back
		s.applyMu.Lock()
		close(locked)
	}()
	select {
	case <-locked:
		return nil
	case <-ctx.Done():
		go func() {
			<-locked
			s.applyMu.Unlock()
		}()
		return ctx.Err()
	}
}

// unapplied holds the committed entries a snapshot merges into the data
// file's keys: after sort, the newest entry of each key, by slot and key,
// and the newest drop of each slot. Marks are left out.
type unapplied struct {
	ents  []entry
	order []*entry
	drops map[uint16]uint64
}

// errTailTrimmed: the tail no longer holds a committed entry a reader of
// the data file needs; an apply round committed after the reader's
// transaction began (a reader holding s.applyMu never sees it).
var errTailTrimmed = errors.New("not in memory: applied and trimmed")

// unappliedThrough copies the entries of slots from seq from+1 through to,
// reading the tail a piece at a time under s.mu so that the committer is
// never held up for long. The copies stay valid after s.mu is released:
// the entries are copied, and their keys and values are never reused.
// Errors: errTailTrimmed.
func (s *Store) unappliedThrough(from, to uint64, slots []int) (unapplied, error) {
	u := unapplied{drops: map[uint16]uint64{}}
	wanted := make([]bool, s.Slots())
	for _, slot := range slots {
		wanted[slot] = true
	}
	for next := from + 1; next <= to; {
		n := min(to+1-next, tailChunkLen)
		s.mu.RLock()
		if s.tail.bySeq(next) == nil || s.tail.bySeq(next+n-1) == nil {
			s.mu.RUnlock()
			return u, fmt.Errorf("entries %d..%d %w", next, next+n-1, errTailTrimmed)
		}
		base := s.tail.firstSeq()
		v := s.tail.view(int(next-base), int(next+n-base))
		for i := range v.len() {
			e := v.at(i)
			switch {
			case e.mark || !wanted[e.slot]:
			case e.drop:
				u.drops[e.slot] = e.seq
			default:
				u.ents = append(u.ents, *e)
			}
		}
		s.mu.RUnlock()
		next += n
	}
	return u, nil
}

// sort orders the entries by slot and key, keeping the newest of each key.
func (u *unapplied) sort() {
	u.order = make([]*entry, len(u.ents))
	for i := range u.ents {
		u.order[i] = &u.ents[i]
	}
	slices.SortFunc(u.order, compareKeySeq)
	latest := u.order[:0]
	for i, e := range u.order {
		if i+1 < len(u.order) && sameKey(u.order[i+1], e) {
			continue
		}
		latest = append(latest, e)
	}
	u.order = latest
}

// slot returns the newest unapplied drop of slot (0: none) and the newest
// unapplied entry of each of its keys written after that drop, by key.
func (u *unapplied) slot(slot int) (drop uint64, ents []*entry) {
	i, _ := slices.BinarySearchFunc(u.order, slot, func(e *entry, slot int) int { return cmp.Compare(int(e.slot), slot) })
	j := i
	for j < len(u.order) && int(u.order[j].slot) == slot {
		j++
	}
	drop = u.drops[uint16(slot)]
	if drop == 0 {
		return 0, u.order[i:j]
	}
	for _, e := range u.order[i:j] {
		if e.seq > drop {
			ents = append(ents, e)
		}
	}
	return drop, ents
}

// Bounds of one restore transaction.
const (
	maxRestoreEntries = 50_000
	maxRestoreBytes   = 32 << 20
)

// Restorer loads a snapshot into a store whose data and log Restore
// discarded. Put the pairs, then Finish with the snapshot's seq and epoch
// map, or Abort. Its methods are not safe for concurrent use. The zero value
// is not usable; get one from Restore.
type Restorer struct {
	s       *Store
	pending []entry
	bytes   int
	tags    []TagSeq // SetTags
	done    bool
}

// errRestorerDone is returned by a Restorer used after Finish or Abort.
var errRestorerDone = fmt.Errorf("restorer already finished: %w", ErrClosed)

// Restore discards all local data (marks too: a snapshot carries none) and
// the whole log, for a follower that is new or too far behind to catch up
// from its primary's log, and returns a Restorer to load a snapshot with.
// Writes, SetEpoch, TruncateAfter and Snapshot are refused with
// ErrRestoring until the Restorer finishes; reads see the partly loaded
// data meanwhile. Epoch() is kept (fencing), the
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
	s.restores++
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
		if err := putRestoredTags(tx, nil); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Delete(metaApplying); err != nil {
			return err
		}
		return putMeta(tx, metaApplied, 0)
	})
	if err != nil {
		return s.setFailed("restore: discard data", err)
	}
	s.applyingTo = 0
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
	s.drops = make(map[uint16][]uint64)
	s.logState = logState{epoch: s.epoch}
	s.durable, s.committed, s.applied, s.target = 0, 0, 0, 0
	s.costedSeq, s.costedBytes = 0, 0
	s.segments = nil
	s.restoredTags = nil
	s.logTags = tagRing{max: s.logTags.max}
	s.readHints.reset()
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
		slots := newSlotsTx(tx)
		for i := range r.pending {
			e := &r.pending[i]
			if err := slots.put(e.slot, e.key, e.value, make([]byte, recordSize(len(e.value)))); err != nil {
				return fmt.Errorf("slot %d key %s: %w", e.slot, keyForError(e.key), err)
			}
		}
		return slots.flush()
	})
	clear(r.pending)
	r.pending, r.bytes = r.pending[:0], 0
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
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
	r.tags = restoredTagsFor(r.tags, seq)
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
	r.pending, r.tags = nil, nil
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
		if err := putRestoredTags(tx, r.tags); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(metaRestoring)
	})
	if err != nil && !errors.Is(err, ErrClosed) {
		// The store stays restoring, refusing writes: only a reopen (which
		// discards the unfinished restore) gets it going again.
		err = s.setFailed("restore: finish", err)
	}
	if err != nil {
		return fmt.Errorf("restore: finish at seq %d: %w", seq, err)
	}
	s.mu.Lock()
	s.restoredTags = r.tags
	s.mu.Unlock()
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
	s.synced.Store(0)
	s.mu.Lock()
	s.logState = logState{last: seq, epoch: epoch, logEpoch: epochAt(epochs, seq), epochs: epochs}
	s.durable, s.committed, s.applied, s.target = seq, seq, seq, seq
	s.costedSeq, s.costedBytes = 0, 0
	if s.auto {
		s.target = math.MaxUint64
	}
	s.segments = []segment{{first: seq + 1, last: seq, path: path}}
	s.readHints.reset()
	s.restoring = false
	s.notifyLocked()
	s.mu.Unlock()
	return nil
}
