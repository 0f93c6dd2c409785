package datastore

import (
	"bytes"
	"cmp"
	"fmt"
	"runtime"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/thunderyurts/thunderyurts/internal/sysproc"
)

// Bounds of one apply round: large enough that random keys share the leaf
// pages they dirty (each leaf is written about once a round), small
// enough that the unapplied tail, which waits in memory for its round,
// stays modest.
//
// The bytes are what the entries cost in memory (entry.cost). They are
// 64 MiB, not 32: a group's replicas run their rounds at the same moment
// (they get the same entries), and the rounds' page writes and fsyncs slow
// the log's fdatasyncs on a shared disk; rounds half as often took the
// puts' p99 on a group of 3 from about 5 ms to 4.5.
const (
	maxApplyEntries = 1_000_000
	maxApplyBytes   = 64 << 20

	// The applier lets entries accumulate for up to applyDelay unless
	// minApplyEntries or maxApplyBytes are waiting or a reader asks it to
	// hurry: random keys dirty most leaf pages whatever the batch size, so
	// fewer, larger rounds write far less, and their page writes and
	// fsyncs compete less with the log's fdatasync. Under load the byte
	// bound starts a round long before the delay ends.
	minApplyEntries = 1_000_000
	applyDelay      = 10 * time.Second

	// yieldEvery is how many puts the applier makes between yields.
	yieldEvery = 256

	// maxApplyDirty bounds what one bbolt transaction of a round holds
	// until its commit, in bytes: the pages it dirties, and the keys and
	// records it was given. A random put dirties a whole leaf page, and bbolt
	// holds every dirty page in memory (as a node, then a page buffer)
	// until the commit: a round over a million keys of 100 bytes dirtied
	// every leaf, ~250 MB of heap at once, and over 10 million keys a
	// gigabyte. A round therefore commits in parts, slot by slot and key
	// by key (applyPart), each of about this many bytes: a leaf is
	// still written about once a round, and memory no longer follows the
	// data set's size. Small parts also let the next part reuse the pages
	// one frees: loading a million keys of 100 bytes into a group of 3, a
	// node's peak RSS was 380-411 MB with parts of 4 MiB against 485-522
	// with 32 MiB (its data file 133 MB against 160), at the same speed;
	// 2 MiB gained nothing more. Into a new tree the pages say little: a
	// bucket's keys pile up in one node until the commit splits it, and the
	// first round of that load held ~50 MB in one transaction.
	maxApplyDirty = 4 << 20
)

// kickApplier tells the applier that the committed seq moved.
func (s *Store) kickApplier() {
	select {
	case s.applyWake <- struct{}{}:
	default: // already due to run
	}
}

// runApplier is the goroutine that moves committed log entries into the
// bbolt file. It is owned by the Store and stops when Close closes s.stop,
// after the transaction in progress.
func (s *Store) runApplier() {
	defer close(s.applierDone)
	for {
		select {
		case <-s.stop:
			return
		case <-s.applyWake:
		}
		if !s.waitForApplyBatch() {
			return
		}
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			n, err := s.applyOnce()
			if err != nil {
				err = s.setFailed("apply log to "+dataFile, err)
				s.mu.Lock()
				s.applyErr = err
				s.notifyLocked()
				s.mu.Unlock()
				return
			}
			// What was committed during a transaction waits for the next
			// round, unless it is a large batch already or a reader
			// hurries: chasing the log in small transactions would cost two
			// fsyncs of the data file each.
			if n == 0 || !s.applyDue() {
				break
			}
		}
	}
}

// waitForApplyBatch waits until a large batch is committed, a reader
// hurries the applier or applyDelay passed; false when the store stops.
func (s *Store) waitForApplyBatch() bool {
	timer := time.NewTimer(applyDelay)
	defer timer.Stop()
	s.setApplyArmed(true)
	defer s.setApplyArmed(false)
	for {
		if s.applyDue() {
			return true
		}
		select {
		case <-s.stop:
			return false
		case <-timer.C:
			return true
		case <-s.applyWake:
		}
	}
}

// setApplyArmed records whether the applier waits with its delay running,
// so that a move of the committed seq wakes it only once a round is due.
func (s *Store) setApplyArmed(armed bool) {
	s.mu.Lock()
	s.applyArmed = armed
	s.mu.Unlock()
}

// applyDue reports whether a large batch is committed or a reader hurries
// the applier.
func (s *Store) applyDue() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyDueLocked()
}

// applyDueLocked is applyDue with s.mu held for writing, as
// committedBytesLocked moves its running count.
func (s *Store) applyDueLocked() bool {
	return s.committed-s.applied >= minApplyEntries || s.committedBytesLocked() >= s.applyBytes || s.hurry > 0
}

// committedBytesLocked is what the committed, unapplied entries cost, as
// far as a round's bytes (s.applyBytes, maxApplyBytes but in tests). Each entry is counted once (costedSeq moves on),
// and applyOnce takes off what it applied, so a call is cheap.
func (s *Store) committedBytesLocked() int64 {
	if s.costedSeq < s.applied {
		s.costedSeq, s.costedBytes = s.applied, 0
	}
	for s.costedSeq < s.committed && s.costedBytes < s.applyBytes {
		e := s.tail.bySeq(s.costedSeq + 1)
		if e == nil {
			break
		}
		s.costedBytes += e.cost()
		s.costedSeq++
	}
	return s.costedBytes
}

// hurryApplier makes the applier skip its batching delay while fn runs,
// and with boost run its rounds at normal priority meanwhile.
func (s *Store) hurryApplier(boost bool, fn func() error) error {
	s.mu.Lock()
	s.hurry++
	if boost {
		s.boost++
	}
	s.mu.Unlock()
	s.kickApplier()
	defer func() {
		s.mu.Lock()
		s.hurry--
		if boost {
			s.boost--
		}
		s.mu.Unlock()
	}()
	return fn()
}

// applyOnce applies the oldest committed, unapplied entries, a round, and
// returns how many it applied. A round commits in one bbolt transaction
// or, when it holds more than s.applyDirty bytes of dirty pages, keys and
// records, in several (applyPart).
func (s *Store) applyOnce() (int, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.RLock()
	if s.restoring || s.closed || s.applied >= s.committed || s.tail.len() == 0 {
		s.mu.RUnlock()
		return 0, nil
	}
	base := s.tail.firstSeq()
	from := int(s.applied + 1 - base)
	batch := s.tail.view(from, min(int(s.committed+1-base), s.tail.len(), from+maxApplyEntries))
	epoch, epochs := s.epoch, s.epochs
	// An apply transaction is hundreds of milliseconds of CPU every
	// applyDelay on each replica; at normal priority it took the cores from
	// the log's commits and the replication round trips, whose latency
	// clients wait on, so it runs in the background. A reader waiting for
	// this round (a scan, a status's counts, writers held back by a full
	// overlay) is waiting on it now: then it runs at normal priority.
	run := sysproc.Background
	if s.boost > 0 {
		run = func(fn func() error) error { return fn() }
	}
	s.mu.RUnlock()
	// The byte bound is applied outside the lock: walking half a million
	// entries under it held the committer up for milliseconds.
	var cost int64
	n := 0
	// A round replaying one that a crash cut short between its parts
	// goes at least as far: the file holds some of its entries.
	for ; n < batch.len() && (cost < s.applyBytes || batch.at(n).seq <= s.applyingTo); n++ {
		cost += batch.at(n).cost()
	}
	batch.n = n
	if s.hooks.beforeApply != nil {
		if err := s.hooks.beforeApply(); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	last := batch.at(batch.len() - 1).seq
	if last < s.applyingTo {
		return 0, fmt.Errorf("seqs %d..%d: the round a crash cut short went to seq %d, and %s holds some of its entries: %w",
			batch.at(0).seq, last, s.applyingTo, dataFile, ErrCorrupt)
	}
	var order []*entry
	var round *paceRound
	parts := 0
	err := run(func() error {
		order = latestInOrder(&batch)
		round = s.pace.begin(time.Now(), len(order), cost, s.applyBytes)
		w := applyRound{epoch: epoch, epochs: epochs, last: last}
		for from := 0; from < len(order); parts++ {
			if parts > 0 && s.hooks.betweenApplyParts != nil {
				if err := s.hooks.betweenApplyParts(); err != nil {
					return err
				}
			}
			var err error
			if from, err = s.applyPart(&w, order, from); err != nil {
				return err
			}
			round.progress(from)
		}
		return nil
	})
	if err != nil {
		if round != nil {
			s.pace.end(round, time.Now(), false)
		}
		return 0, fmt.Errorf("seqs %d..%d: %w", batch.at(0).seq, last, err)
	}
	s.applies.Add(1)
	s.observer.Applied(batch.len(), time.Since(start))
	s.log.Debug("datastore applied", "entries", batch.len(), "keys", len(order), "transactions", parts, "last_seq", last, "took", time.Since(start))
	s.applyingTo = 0
	s.mu.Lock()
	s.applied = last
	if s.costedSeq >= last {
		s.costedBytes -= cost
	}
	s.mu.Unlock()
	// The overlay forgets the applied entries a chunk at a time: one
	// round may hold a million entries, and writers and readers need
	// s.mu in between. Lookups stop at the applied seq, so an applied entry
	// still indexed reads as not there, and bbolt answers.
	for start := 0; start < len(order); start += overlayChunk {
		s.mu.Lock()
		for _, e := range order[start:min(start+overlayChunk, len(order))] {
			s.forgetAppliedLocked(e)
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.overlayBytes -= cost
	s.pace.end(round, time.Now(), true)
	s.notifyLocked()
	s.mu.Unlock()
	for more := true; more; {
		s.mu.Lock()
		more = s.trimTailLocked(tailChunkLen)
		s.mu.Unlock()
	}
	return batch.len(), nil
}

// applyPart applies order[from:] in one bbolt transaction, up to the
// entry at which the transaction holds s.applyDirty bytes of dirty pages,
// keys and records, and returns where it stopped. The part that reaches
// the end records the round's last seq and the epochs. An earlier part
// leaves the file holding entries past the applied seq, so the first one
// records the round's last seq as metaApplying, which the last part
// deletes: readers of the file alone find it in their transaction and
// wait for the round to end (viewSettled), and Open raises the committed
// seq to it, so that no truncation takes those entries back and the round
// that replays them reaches it. Readers that merge the unapplied entries
// over the file need not wait: those entries are the newest of their
// keys, and a key's stats are taken off by the value the file holds, so a
// part already applied reads the same; so does the replay.
func (s *Store) applyPart(w *applyRound, order []*entry, from int) (int, error) {
	to := from
	err := guardBolt(s.dataPath, func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			w.begin(tx)
			// The mapping and the file's own page size (one made before
			// 16 KiB pages has 4 KiB), read in the transaction: no remap
			// happens before its commit.
			info := tx.DB().Info()
			// The pages the parts before read (over a round of random keys,
			// the whole file) and those reads mapped since are still
			// mapped, counted in the node's resident size although they
			// are clean page cache. Unmapping them keeps a node's RSS to
			// its heap, one part's pages and what reads map. Best effort:
			// a failure changes only what RSS counts.
			_ = unmapPages(info.Data, tx.Size())
			ps := int64(info.PageSize)
			for ; to < len(order); to++ {
				// Into a small or new tree, keys pile up in few nodes,
				// whose count says little: what bbolt was given counts.
				if to > from && w.given >= s.applyDirty {
					break
				}
				if (to-from)%yieldEvery == yieldEvery-1 {
					// Two cores: without yielding, requests runnable on the
					// other core's queue wait out a whole time slice.
					runtime.Gosched()
					// Every node bbolt has read for a change is written
					// out, a page or more, at the commit.
					if stats := tx.Stats(); stats.GetNodeCount()*ps+w.given >= s.applyDirty {
						break
					}
				}
				e := order[to]
				if err := w.apply(e); err != nil {
					return fmt.Errorf("seq %d slot %d key %s: %w", e.seq, e.slot, keyForError(e.key), err)
				}
			}
			if err := w.slots.flush(); err != nil {
				return err
			}
			if to < len(order) {
				if w.marked {
					return nil
				}
				w.marked = true
				return putMeta(tx, metaApplying, w.last)
			}
			// Also the record a round cut short by a crash left, which
			// this one, reaching past it, replaced or replays.
			if err := tx.Bucket(bucketMeta).Delete(metaApplying); err != nil {
				return fmt.Errorf("meta %s: %w", metaApplying, err)
			}
			if err := putMeta(tx, metaApplied, w.last); err != nil {
				return err
			}
			return putEpochs(tx, w.epoch, w.epochs)
		})
	})
	return to, err
}

// applyRound is the state of one apply round, carried from each of its
// transactions to the next.
type applyRound struct {
	tx      *bolt.Tx
	records []byte // room for the stored records of the puts
	slots   *slotsTx
	// The last drop applied: entries come slot by slot, a slot's drop
	// first, and the older entries of its slot went with it.
	dropSlot uint16
	dropSeq  uint64
	// What the round's last transaction records.
	last   uint64
	epoch  uint64
	epochs []EpochStart
	// marked: a part recorded metaApplying.
	marked bool
	// given: the bytes of keys and records this transaction gave bbolt,
	// which holds them, each with an inode, until the commit.
	given int64
}

// boltInode is what bbolt holds for each key it is given besides the key
// and the value (its inode), until the commit.
const boltInode = 64

// recordChunk is how much room for stored records a round allocates at
// a time: a transaction's records live until its commit.
const recordChunk = 1 << 20

// begin starts the round's next transaction.
func (w *applyRound) begin(tx *bolt.Tx) {
	w.tx, w.slots, w.records, w.given = tx, newSlotsTx(tx), nil, 0
}

// record returns room for a stored record of n bytes. bbolt keeps the
// slices it is given until the commit, so they are never reused.
func (w *applyRound) record(n int) []byte {
	if cap(w.records)-len(w.records) < n {
		w.records = make([]byte, 0, max(n, recordChunk))
	}
	w.records = w.records[:len(w.records)+n]
	return w.records[len(w.records)-n:]
}

// apply applies one entry of latestInOrder's order.
func (w *applyRound) apply(e *entry) error {
	if e.mark {
		return putMark(w.tx, e.key, e.value)
	}
	switch {
	case e.drop:
		w.dropSlot, w.dropSeq = e.slot, e.seq
		return w.slots.drop(e.slot)
	case e.slot == w.dropSlot && e.seq < w.dropSeq:
		return nil
	case e.del:
		return w.slots.delete(e.slot, e.key)
	}
	n := recordSize(len(e.value))
	w.given += int64(len(e.key) + n + boltInode)
	return w.slots.put(e.slot, e.key, e.value, w.record(n))
}

// overlayChunk bounds the entries the overlay forgets under one hold of
// s.mu (a few hundred microseconds).
const overlayChunk = 1024

// latestInOrder returns the batch's entries sorted by slot and key,
// keeping only the newest entry of each key: overwritten versions need no
// bbolt work, and ordered puts touch each page once in turn. A slot's
// drops (no key) come before its keys, the newest alone, and marks come
// last. An entry's overlay chain names the previous entry with its hash,
// which is nearly always the previous version of its key: those are
// dropped before the sort, and equal keys left over (hash collisions)
// after it.
func latestInOrder(batch *tailView) []*entry {
	first := batch.at(0).seq
	superseded := make([]bool, batch.len())
	kept := batch.len()
	for i := range batch.len() {
		e := batch.at(i)
		if e.prev < first {
			continue
		}
		if p := batch.at(int(e.prev - first)); sameKey(p, e) {
			superseded[e.prev-first] = true
			kept--
		}
	}
	out := make([]*entry, 0, kept)
	for i, sup := range superseded {
		if !sup {
			out = append(out, batch.at(i))
		}
	}
	slices.SortFunc(out, compareKeySeq)
	latest := out[:0]
	for j, e := range out {
		if j+1 < len(out) && sameKey(out[j+1], e) {
			continue
		}
		latest = append(latest, e)
	}
	return latest
}

// sameKey reports whether x and y are versions of one key, one mark or
// drops of one slot.
func sameKey(x, y *entry) bool {
	return x.slot == y.slot && x.mark == y.mark && bytes.Equal(x.key, y.key)
}

func compareKeySeq(x, y *entry) int {
	if x.mark != y.mark {
		if x.mark {
			return 1
		}
		return -1
	}
	if x.slot != y.slot {
		return int(x.slot) - int(y.slot)
	}
	if c := bytes.Compare(x.key, y.key); c != 0 {
		return c
	}
	return cmp.Compare(x.seq, y.seq)
}

// trimTailLocked drops up to limit of the oldest applied entries while the
// tail is over its byte budget, and reports whether more are to go;
// ReadLog reads them from the segment files from then on. The caller
// drops the lock between calls: clearing a round's entries at once held
// the committer up for milliseconds.
func (s *Store) trimTailLocked(limit int) bool {
	n := 0
	for n < limit && n < s.tail.len() && s.tailBytes > s.tailMax && s.tail.at(n).seq <= s.applied {
		s.tailBytes -= s.tail.at(n).cost()
		n++
	}
	s.tail.dropFront(n)
	return n == limit
}
