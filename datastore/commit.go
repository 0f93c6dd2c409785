package datastore

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"
)

type requestKind uint8

const (
	kindWrite requestKind = iota
	kindApply
	kindEpoch
	// kindCall runs call on the committer goroutine, between batches and
	// once no commit is in flight, for operations that rewrite the log
	// (TruncateAfter, Restore).
	kindCall
)

// request is one queued Write, ApplyLog, SetEpoch or call. Its entries are
// built by the calling goroutine (keys and values copied), so the committer
// only assigns sequence numbers, encodes and writes.
type request struct {
	kind    requestKind
	entries []entry
	epoch   uint64       // kindEpoch
	call    func() error // kindCall
	restore bool         // part of a restore: allowed while restoring
	paced   bool         // a client's write: waits as the pacer asks (pace.go)

	lastSeq uint64
	err     error
	done    chan struct{} // closed once answered, for a waiting caller
	// notify, for an asynchronous caller, is called instead of closing
	// done, on the syncer (or the committer: calls, and requests failed
	// by Close).
	notify func(lastSeq uint64, err error)
}

// cost is what r's entries cost in memory once published (entry.cost).
func (r *request) cost() int64 {
	var c int64
	for i := range r.entries {
		c += r.entries[i].cost()
	}
	return c
}

// entryBufs holds the entries of requests the committer has published
// (*[]entry), for later requests to fill: allocated anew, they were a
// sixth of what a node allocated under writes.
var entryBufs sync.Pool

// maxPooledEntries bounds the entries kept for reuse in one buffer (a
// replication message's, at most): larger ones go to the collector.
const maxPooledEntries = 2048

// newEntries returns room for n entries, from entryBufs if it has enough.
// Pooled buffers are zero to their capacity; the caller sets each entry
// whole.
func newEntries(n int) []entry {
	if p, _ := entryBufs.Get().(*[]entry); p != nil && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]entry, n, max(n, 64))
}

// releaseEntries hands r's entries to a later request once nothing reads
// them: the tail holds copies, and the keys and values they point at.
func (r *request) releaseEntries() {
	e := r.entries
	r.entries = nil
	if cap(e) == 0 || cap(e) > maxPooledEntries {
		return
	}
	clear(e) // pin no key or value while pooled; past len it is zero
	e = e[:cap(e)]
	entryBufs.Put(&e)
}

// finish hands r's outcome to its caller.
func (r *request) finish() {
	if r.notify == nil {
		close(r.done)
		return
	}
	if r.err != nil {
		r.notify(0, r.err)
	} else {
		r.notify(r.lastSeq, nil)
	}
}

// Mutation is one change for Write: Value is stored under Key in Slot, or,
// with Delete, the key is removed (Value is ignored). A nil Value stores an
// empty value. With Drop, every key of Slot is removed (Key and Value must
// be empty). With Mark, Value is stored as the mark named Key (Slot is
// ignored): a mark is no key of any slot, reads and scans never see it,
// Store.Mark does. At most one of Delete, Drop and Mark is set. Tag, if
// set, is kept with the entry in the log. The zero
// value is invalid (empty key).
type Mutation struct {
	Slot   int
	Key    []byte
	Value  []byte
	Delete bool
	Drop   bool
	Mark   bool
	Tag    Tag
}

// Tag names one write of one client: the client's random id and the
// write's number in that client, the same on every retry of it. The log
// keeps it with the entry (and ReadLog returns it), so whoever holds the
// log can tell a retry from a new write. The zero Tag (Client 0) is no tag.
type Tag struct {
	Client uint64
	Seq    uint64
}

// IsZero reports whether t is no tag.
func (t Tag) IsZero() bool { return t.Client == 0 }

// Write appends the mutations to the write-ahead log, one entry each,
// stamped with Epoch(), makes them durable (fdatasync) and returns the
// sequence number of the last one. Later mutations of one call win over
// earlier ones on the same key. An empty call writes nothing and returns
// LastSeq(). The entries become visible to reads once the committed seq
// reaches them: at once with Options.AutoCommit, else through SetCommitted.
//
// All mutations are validated first; if any is invalid nothing is written
// and the error (ErrBadSlot, ErrEmptyKey, ErrKeyTooLarge, ErrValueTooLarge)
// names the mutation's index. Keys and values are copied before Write
// queues them, so the caller may reuse its buffers as soon as Write returns.
//
// Concurrent calls are group-committed: one committer takes everything
// queued and writes it with one write; a syncer fdatasyncs it and wakes the
// callers. While that fdatasync runs the committer writes what queued
// meanwhile as the next batch, so up to two are in flight. While more than
// 128 MiB of entries wait for the applier (it applies only committed
// entries), Write blocks before queueing. If ctx ends while the call
// waits, Write returns ctx.Err(); once queued the write may still happen,
// and its outcome is then unknown to the caller. Other errors: ErrClosed
// (also for calls still queued when Close is called), ErrRestoring, and
// ErrFailed once a log write or fdatasync has failed: the store is then
// fail-stop and refuses every later write, and sequence numbers are never
// reused.
func (s *Store) Write(ctx context.Context, muts []Mutation) (lastSeq uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(muts) == 0 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if s.closed {
			return 0, ErrClosed
		}
		return s.last, nil
	}
	r, err := s.writeRequest(muts)
	if err != nil {
		return 0, err
	}
	return s.submit(ctx, r)
}

// WriteAsync is Write without the wait for durability, for clients'
// writes: once the mutations are validated and queued it returns, and the
// store later calls done with what Write would have returned. It waits
// before queueing as Write does while the overlay is over its limit, and
// while an apply round runs it may also wait a little, up to 250 ms, to
// pace writers faster than the rounds (pace.go). done runs on a goroutine
// of the store (the syncer, or the committer for writes failed by Close),
// so it must be quick and must not call into the Store's write path. When
// WriteAsync returns an error (invalid mutations, ctx ended while it
// waited, a closed or failed store), done is not called. muts must not be
// empty.
func (s *Store) WriteAsync(ctx context.Context, muts []Mutation, done func(lastSeq uint64, err error)) error {
	if len(muts) == 0 {
		return fmt.Errorf("write: no mutations")
	}
	r, err := s.writeRequest(muts)
	if err != nil {
		return err
	}
	r.notify, r.paced = done, true
	return s.enqueue(ctx, r)
}

// writeRequest validates muts and copies them into a request.
func (s *Store) writeRequest(muts []Mutation) (*request, error) {
	r := &request{kind: kindWrite, entries: newEntries(len(muts))}
	for i := range muts {
		m := &muts[i]
		if err := s.validateOp(m.Slot, m.Key, m.Value, m.Delete, m.Drop, m.Mark); err != nil {
			return nil, fmt.Errorf("write: mutation %d (slot %d, key %s): %w", i, m.Slot, keyForError(m.Key), err)
		}
		r.entries[i] = entry{slot: opSlot(m.Slot, m.Mark), del: m.Delete, drop: m.Drop, mark: m.Mark, tag: m.Tag, key: m.Key, value: m.Value}
	}
	r.ownBytes()
	return r, nil
}

// ownBytes copies the keys and values of r's entries, which still point
// at the caller's memory, into one buffer: one allocation per request, not
// per entry, and kept as long as any of them is. A delete's value is
// dropped.
func (r *request) ownBytes() {
	size := 0
	for i := range r.entries {
		size += len(r.entries[i].key)
		if !r.entries[i].del {
			size += len(r.entries[i].value)
		}
	}
	buf := make([]byte, 0, size)
	for i := range r.entries {
		e := &r.entries[i]
		e.key, buf = carve(buf, e.key)
		if e.del {
			e.value = nil
		} else {
			e.value, buf = carve(buf, e.value)
		}
	}
}

// carve appends b to buf and returns the copy, capped so that appending to
// it cannot overwrite its neighbour. It is never nil.
func carve(buf, b []byte) (cp, rest []byte) {
	off := len(buf)
	buf = append(buf, b...)
	return buf[off:len(buf):len(buf)], buf
}

// LogEntry is one entry of the log: the mutation written at sequence
// number Seq by the primary of Epoch, with its writer's Tag if it had one.
// For a delete Value is empty; for a Drop (of Slot) Key and Value are; a
// Mark has Slot 0 (see Mutation). The zero value is not a valid entry (Seq
// starts at 1).
type LogEntry struct {
	Seq    uint64
	Epoch  uint64
	Slot   int
	Key    []byte
	Value  []byte
	Delete bool
	Drop   bool
	Mark   bool
	Tag    Tag
}

// ApplyLog appends entries received from a primary as they are, with their
// Seq and Epoch, group-committed with other calls like Write, and returns
// once they are durable. With Options.AutoCommit they are then committed;
// otherwise a follower calls SetCommitted with its primary's high
// watermark. An empty call does nothing. The entries are copied before they
// are queued.
//
// Errors: ErrLogGap if the Seqs are not consecutive or do not continue the
// local log (the first must be LastSeq()+1 when the call is committed;
// entries already present are refused too, so a retry after an unknown
// outcome should compare LastSeq first); ErrStaleEpoch if the epochs go
// down, within the call or against the local log's last entry; the
// validation errors of Write; ErrClosed, ErrRestoring, ErrFailed; ctx.Err()
// as for Write. Nothing of a refused call is written. Entries with an epoch
// above Epoch() raise it, and every entry's epoch is recorded in the epoch
// map.
func (s *Store) ApplyLog(ctx context.Context, entries []LogEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(entries) == 0 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if s.closed {
			return ErrClosed
		}
		return nil
	}
	r, err := s.applyRequest(entries)
	if err != nil {
		return err
	}
	if _, err := s.submit(ctx, r); err != nil {
		return fmt.Errorf("apply log at seq %d: %w", entries[0].Seq, err)
	}
	return nil
}

// ApplyLogAsync is ApplyLog without the wait, as WriteAsync is to Write:
// the store calls done with the outcome (lastSeq is the last entry's
// Seq). Calls from one goroutine are appended in the order made, so a
// follower can queue the next entries while the previous ones are synced.
// entries must not be empty.
func (s *Store) ApplyLogAsync(ctx context.Context, entries []LogEntry, done func(lastSeq uint64, err error)) error {
	if len(entries) == 0 {
		return fmt.Errorf("apply log: no entries")
	}
	r, err := s.applyRequest(entries)
	if err != nil {
		return err
	}
	first := entries[0].Seq
	r.notify = func(lastSeq uint64, err error) {
		if err != nil {
			err = fmt.Errorf("apply log at seq %d: %w", first, err)
		}
		done(lastSeq, err)
	}
	if err := s.enqueue(ctx, r); err != nil {
		return fmt.Errorf("apply log at seq %d: %w", first, err)
	}
	return nil
}

// applyRequest validates entries and copies them into a request.
func (s *Store) applyRequest(entries []LogEntry) (*request, error) {
	r := &request{kind: kindApply, entries: newEntries(len(entries))}
	for i := range entries {
		e := &entries[i]
		if e.Seq == 0 || e.Seq != entries[0].Seq+uint64(i) {
			return nil, fmt.Errorf("apply log: entry %d has seq %d after seq %d: %w", i, e.Seq, entries[0].Seq+uint64(i)-1, ErrLogGap)
		}
		if i > 0 && e.Epoch < entries[i-1].Epoch {
			return nil, fmt.Errorf("apply log: seq %d has epoch %d after epoch %d: %w", e.Seq, e.Epoch, entries[i-1].Epoch, ErrStaleEpoch)
		}
		if err := s.validateOp(e.Slot, e.Key, e.Value, e.Delete, e.Drop, e.Mark); err != nil {
			return nil, fmt.Errorf("apply log: seq %d (slot %d, key %s): %w", e.Seq, e.Slot, keyForError(e.Key), err)
		}
		r.entries[i] = entry{slot: opSlot(e.Slot, e.Mark), del: e.Delete, drop: e.Drop, mark: e.Mark, seq: e.Seq, epoch: e.Epoch, tag: e.Tag,
			key: e.Key, value: e.Value}
	}
	r.ownBytes()
	return r, nil
}

// refusal returns why r cannot be queued now, if it cannot. s.mu must be
// held.
func (s *Store) refusal(r *request) error {
	switch {
	case s.closed:
		return ErrClosed
	case s.failErr != nil:
		return s.failErr
	case s.restoring && !r.restore:
		return ErrRestoring
	}
	return nil
}

// submit queues r for the committer and waits for its result or for ctx.
func (s *Store) submit(ctx context.Context, r *request) (uint64, error) {
	r.done = make(chan struct{})
	if err := s.enqueue(ctx, r); err != nil {
		return 0, err
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		select {
		case <-r.done:
		default:
			return 0, ctx.Err()
		}
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.lastSeq, nil
}

// enqueue queues r for the committer. Data requests wait first while the
// overlay is over its limit, and paced ones, while a round runs, as long
// as the pacer asks (pace.go).
func (s *Store) enqueue(ctx context.Context, r *request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// The cost only matters while a round runs; a round that begins before
	// the lock is taken finds this write at no cost, which it can spare.
	var cost int64
	if r.paced && s.pace.running() {
		cost = r.cost()
	}
	s.mu.Lock()
	hurrying, paced := false, !r.paced
	defer func() {
		if hurrying {
			s.mu.Lock()
			s.hurry--
			s.boost--
			s.mu.Unlock()
		}
	}()
	for {
		if err := s.refusal(r); err != nil {
			s.mu.Unlock()
			return err
		}
		if len(r.entries) == 0 || s.overlayBytes <= s.overMax && (paced || !s.pace.running()) {
			break
		}
		if s.overlayBytes <= s.overMax {
			paced = true
			d, ended := s.pace.delay(time.Now(), s.overlayBytes, s.overMax-s.overMax/paceHeadroom, cost)
			if d <= 0 {
				break
			}
			s.mu.Unlock()
			if err := s.waitPace(ctx, d, ended); err != nil {
				return err
			}
			s.mu.Lock()
			continue
		}
		paced = true // a writer the limit held is not paced after
		if !hurrying {
			hurrying = true
			s.hurry++
			s.boost++ // writers wait on the round
			s.kickApplier()
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
	s.queue = append(s.queue, r)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // the committer is already due to look at the queue
	}
	return nil
}

// maxInFlight is how many written commits may wait for an fdatasync: the
// one being synced and the next, written meanwhile, so followers receive
// it and start their own fdatasync early. More would only make batches
// smaller.
const maxInFlight = 2

// A syncJob is one batch handed from the committer to the syncer, which
// answers its requests once the log is durable through it, in log order.
type syncJob struct {
	batch   []*request
	wal     *os.File // the segment it was written to; nil if it wrote nothing
	end     int64    // the segment's size after it
	last    uint64   // the log's last seq after it
	entries int      // data entries it wrote
}

// runCommitter is the single goroutine that writes the log; its syncer
// goroutine fdatasyncs it. It is owned by the Store and stops when Close
// sets closed: once the syncer answered every batch written, it fails
// whatever is still queued.
func (s *Store) runCommitter() {
	defer close(s.committerDone)
	jobs := make(chan *syncJob, maxInFlight)
	syncerDone := make(chan struct{})
	go s.runSyncer(jobs, syncerDone)
	for {
		s.mu.Lock()
		for s.inFlight >= maxInFlight && !s.closed {
			s.waitLocked()
		}
		if s.closed {
			s.mu.Unlock()
			close(jobs)
			<-syncerDone
			s.mu.Lock()
			queue := s.queue
			s.queue = nil
			s.mu.Unlock()
			for _, r := range queue {
				r.err = ErrClosed
				r.finish()
			}
			return
		}
		batch := s.takeBatch()
		s.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-s.wake:
			case <-s.stop:
			}
			continue
		}
		if batch[0].kind == kindCall {
			s.waitSynced()
			s.runCall(batch[0])
			batch[0].finish()
			continue
		}
		j := s.commit(batch)
		s.mu.Lock()
		s.inFlight++
		s.mu.Unlock()
		jobs <- j
	}
}

// waitLocked waits for the next state change. s.mu must be held for
// writing; it is released while waiting.
func (s *Store) waitLocked() {
	ch := s.changed
	s.mu.Unlock()
	<-ch
	s.mu.Lock()
}

// waitSynced waits until every written commit is synced and answered. The
// committer calls it before it changes segment or rewrites the log.
func (s *Store) waitSynced() {
	s.mu.Lock()
	for s.inFlight > 0 {
		s.waitLocked()
	}
	s.mu.Unlock()
}

// runSyncer fdatasyncs what the committer wrote and answers its requests,
// taking every job waiting into one fdatasync, until jobs is closed.
func (s *Store) runSyncer(jobs <-chan *syncJob, done chan<- struct{}) {
	defer close(done)
	var group []*syncJob
	for j := range jobs {
		group = append(group[:0], j)
		for more := true; more; {
			select {
			case j, ok := <-jobs:
				if more = ok; ok {
					group = append(group, j)
				}
			default:
				more = false
			}
		}
		if s.logWaiters.Load() > 0 {
			// A primary's shippers, woken by the commit just written, run
			// before this thread blocks in fdatasync: shipping starts the
			// longer path of a replicated write, and a goroutine queued
			// behind a thread in a syscall waits for another thread to
			// take it up, on a busy machine ~100µs.
			runtime.Gosched()
		}
		s.syncJobs(group)
		clear(group)
		// Let the answered writers queue their next writes before the
		// committer takes the next batch: on two cores this makes batches
		// larger.
		runtime.Gosched()
	}
}

// syncJobs makes the jobs durable with one fdatasync and answers them.
// Once the store failed (a log write or fdatasync, a log rewrite, a bbolt
// commit), jobs not yet answered fail too, even those that wrote nothing:
// what they rely on may be lost.
func (s *Store) syncJobs(group []*syncJob) {
	var wal *os.File
	var end int64
	entries := 0
	for _, j := range group {
		if j.wal != nil {
			wal, end = j.wal, j.end
		}
		entries += j.entries
	}
	err := s.Err()
	if err == nil && wal != nil {
		if s.hooks.beforeSync != nil {
			s.hooks.beforeSync()
		}
		start := time.Now()
		if err = s.sync(wal); err != nil {
			err = s.setFailed("fdatasync log in "+s.walDir, err)
		} else {
			s.observer.GroupCommit(entries, time.Since(start))
			s.synced.Store(end)
		}
	}
	if err == nil {
		s.mu.Lock()
		s.durable = group[len(group)-1].last
		s.advanceCommittedLocked()
		s.notifyLocked()
		s.mu.Unlock()
	}
	for _, j := range group {
		if err != nil {
			failAll(j.batch, err)
		}
		for _, r := range j.batch {
			r.finish()
		}
	}
	s.mu.Lock()
	s.inFlight -= len(group)
	s.notifyLocked()
	s.mu.Unlock()
}

// takeBatch takes the queued requests up to the first call, or the call
// alone when it is first. s.mu must be held.
func (s *Store) takeBatch() []*request {
	n := 0
	for _, r := range s.queue {
		if r.kind == kindCall {
			if n == 0 {
				n = 1
			}
			break
		}
		n++
	}
	batch := slices.Clone(s.queue[:n])
	rest := copy(s.queue, s.queue[n:])
	clear(s.queue[rest:])
	s.queue = s.queue[:rest]
	return batch
}

func (s *Store) runCall(r *request) {
	if err := s.Err(); err != nil && !r.restore {
		r.err = err
		return
	}
	r.err = r.call()
}

// commit writes one batch to the log and returns it for the syncer, which
// answers it. Requests refused on their own (a log gap, a stale epoch) get
// their error without affecting the others; a failed write fails them all
// and the store.
func (s *Store) commit(batch []*request) *syncJob {
	j := &syncJob{batch: batch}
	if err := s.Err(); err != nil {
		failAll(batch, err)
		return j
	}
	if err := s.rollIfFull(); err != nil {
		if errors.Is(err, ErrFailed) {
			failAll(batch, err)
		} else {
			s.failStop(batch, "roll log segment", err)
		}
		return j
	}
	st := s.logState
	prev := st.last
	buf := s.walBuf[:0]
	for _, r := range batch {
		buf = s.encode(&st, r, buf)
	}
	j.last = st.last
	if len(buf) == 0 {
		s.walBuf = buf
		return j // only no-op epoch changes and refusals
	}
	m := commitMark{bytes: int64(len(buf)), crc: crc32.Checksum(buf, castagnoli), last: st.last, synced: s.synced.Load()}
	if st.last > s.last {
		m.first = s.last + 1
	}
	buf = appendCommit(buf, m)
	s.walBuf = buf
	if err := s.writeLog(buf); err != nil {
		s.failStop(batch, "write log", err)
		return j
	}
	s.walSize += int64(len(buf))
	s.mu.Lock()
	for _, r := range batch {
		if r.err == nil {
			for i := range r.entries {
				s.publishLocked(r.entries[i])
			}
		}
	}
	s.logState = st
	seg := &s.segments[len(s.segments)-1]
	seg.last, seg.size = st.last, s.walSize
	s.notifyLocked()
	s.mu.Unlock()
	for _, r := range batch {
		r.releaseEntries()
	}
	j.wal, j.end, j.entries = s.wal, s.walSize, int(st.last-prev)
	s.commits.Add(1)
	if len(s.walBuf) > 4<<20 {
		s.walBuf = nil // one huge batch should not pin its buffer forever
	}
	return j
}

// encode checks r against the log state st, assigns sequence numbers and
// epochs, advances st and appends r's records to buf.
func (s *Store) encode(st *logState, r *request, buf []byte) []byte {
	switch r.kind {
	case kindEpoch:
		if r.epoch < st.epoch {
			r.err = fmt.Errorf("current epoch is %d: %w", st.epoch, ErrStaleEpoch)
		} else if st.markEpoch(r.epoch, st.last) {
			buf = appendRecord(buf, recEpoch, st.last, r.epoch, 0, nil, nil)
		}
		r.lastSeq = st.last
		return buf
	case kindApply:
		first := &r.entries[0]
		if first.seq != st.last+1 {
			r.err = fmt.Errorf("local log ends at seq %d, entries start at %d: %w", st.last, first.seq, ErrLogGap)
			return buf
		}
		if first.epoch < st.logEpoch {
			r.err = fmt.Errorf("local log is at epoch %d, entries start at epoch %d: %w", st.logEpoch, first.epoch, ErrStaleEpoch)
			return buf
		}
	case kindWrite:
		for i := range r.entries {
			r.entries[i].seq, r.entries[i].epoch = st.last+1+uint64(i), st.epoch
		}
	}
	for i := range r.entries {
		e := &r.entries[i]
		buf = appendEntryRecord(buf, e)
		st.appendEntry(e.seq, e.epoch)
	}
	r.lastSeq = st.last
	return buf
}

// failStop makes the store refuse every later write, and fails the batch.
func (s *Store) failStop(batch []*request, what string, err error) {
	failAll(batch, s.setFailed(what+" in "+s.walDir, err))
}

func failAll(batch []*request, err error) {
	for _, r := range batch {
		if r.err == nil {
			r.err = err
		}
	}
}

// setFailed makes the store fail-stop — every later write is refused —
// and returns the error to report.
func (s *Store) setFailed(what string, err error) error {
	err = fmt.Errorf("%s: %w: %w", what, ErrFailed, err)
	s.log.Error("datastore failed, refusing writes", "err", err)
	s.mu.Lock()
	if s.failErr == nil {
		s.failErr = err
		close(s.failed)
	}
	s.notifyLocked()
	s.mu.Unlock()
	return err
}

// Failed returns a channel that is closed when the store fails: a write or
// fdatasync of the log, a log rewrite (TruncateAfter, Restore) or a commit
// of the applied state failed. From then on every write is refused with
// ErrFailed (Err says why) while reads still work; nothing heals it but
// Close and Open, which recovers every acknowledged write from the log. A
// node watches this channel to step down and reopen its store. The applier
// does not fail the store when the disk is full: bbolt rolls its
// transaction back and the applier retries every few seconds, so the store
// heals by itself once space is freed.
func (s *Store) Failed() <-chan struct{} { return s.failed }

// Err returns why the store failed (wrapping ErrFailed), or nil.
func (s *Store) Err() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.failErr
}
