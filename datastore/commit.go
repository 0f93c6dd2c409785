package datastore

import (
	"context"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Bounds of one group commit. A single call is never split (it is one
// transaction by contract), but calls queued behind it wait for the next
// commit once these are reached, so one transaction's dirty pages stay small.
const (
	maxCommitMutations = 4096
	maxCommitBytes     = 8 << 20

	// A pooled request keeps its encoding buffer up to this size.
	maxPooledBuffer = 64 << 10

	// Trimming deletes at most this many old entries per commit beyond the
	// number just appended, so a lowered LogRetention catches up gradually.
	trimSlack = 256
)

type requestKind uint8

const (
	kindWrite requestKind = iota
	kindApply
	kindEpoch
)

// encoded is one mutation or log entry, encoded by the calling goroutine
// so the committer only assigns sequence numbers and calls bbolt.
type encoded struct {
	slot    int
	del     bool
	seq     uint64 // set by the caller for kindApply, by the committer otherwise
	epoch   uint64 // likewise
	seqKey  []byte
	key     []byte // inside entry
	record  []byte // nil for a delete
	entry   []byte
	partial uint32
}

// request is one queued Write, ApplyLog or SetEpoch. Its buffers stay
// untouched until the committer signals done, so bbolt may keep pointing
// into them until the transaction commits.
type request struct {
	kind    requestKind
	muts    []encoded
	buf     []byte
	payload int
	epoch   uint64 // kindEpoch

	lastSeq uint64
	err     error
	done    chan struct{} // buffered; the committer sends once
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

func newRequest() *request { return requestPool.Get().(*request) }

// release returns a request whose result has been received. Requests
// abandoned because ctx ended are left to the garbage collector instead:
// the committer may still be using them.
func (r *request) release() {
	clear(r.muts)
	r.muts = r.muts[:0]
	if cap(r.buf) > maxPooledBuffer {
		r.buf = nil
	}
	r.payload, r.epoch, r.lastSeq, r.err = 0, 0, 0, nil
	requestPool.Put(r)
}

// grow sizes the request buffer to n bytes, once per request, before encode
// carves it up; encode overwrites every byte, so stale contents do not matter.
func (r *request) grow(n int) {
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
}

// encode appends one mutation to the request, carving its sequence key,
// record and log entry out of r.buf from offset *off.
func (r *request) encode(off *int, slot int, del bool, key, value []byte) {
	m := encoded{slot: slot, del: del}
	b := r.buf[*off:]
	m.seqKey = b[:seqSize:seqSize]
	b = b[seqSize:]
	if !del {
		n := recordSize(len(value))
		m.record = b[:n:n]
		encodeRecord(m.record, key, value)
		b = b[n:]
	} else {
		value = nil
	}
	n := entrySize(len(key), len(value))
	m.entry = b[:n:n]
	m.key, m.partial = encodeEntryBody(m.entry, slot, del, key, value)
	*off += seqSize + len(m.record) + n
	r.payload += len(key) + len(value)
	r.muts = append(r.muts, m)
}

func encodedSize(del bool, key, value []byte) int {
	if del {
		return seqSize + entrySize(len(key), 0)
	}
	return seqSize + recordSize(len(value)) + entrySize(len(key), len(value))
}

// Mutation is one change for Write: Value is stored under Key in Slot, or,
// with Delete, the key is removed (Value is ignored). A nil Value stores an
// empty value. The zero value is invalid (empty key).
type Mutation struct {
	Slot   int
	Key    []byte
	Value  []byte
	Delete bool
}

// Write makes the mutations durable (fsync) in one bbolt transaction
// together with one op-log entry per mutation, stamped with Epoch(), and
// returns the sequence number of the last entry. Later mutations of one call
// win over earlier ones on the same key. An empty call writes nothing and
// returns LastSeq().
//
// All mutations are validated first; if any is invalid nothing is written
// and the error (ErrBadSlot, ErrEmptyKey, ErrKeyTooLarge, ErrValueTooLarge)
// names the mutation's index. Keys and values are copied before Write
// queues them, so the caller may reuse its buffers as soon as Write returns.
//
// Concurrent calls are group-committed: one committer takes everything
// queued, commits it in one transaction with one fsync, wakes the callers,
// and at once takes what queued meanwhile. If ctx ends while the call is
// queued or committing, Write returns ctx.Err() without removing the call
// from the queue: the write may still happen, and its outcome is then
// unknown to the caller. Other errors: ErrClosed (also for calls still
// queued when Close is called) and bbolt errors from the commit, after which
// nothing of the failed transaction is kept.
func (s *Store) Write(ctx context.Context, muts []Mutation) (lastSeq uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(muts) == 0 {
		if s.isClosed.Load() {
			return 0, ErrClosed
		}
		return s.LastSeq(), nil
	}
	size := 0
	for i := range muts {
		m := &muts[i]
		if err := s.validate(m.Slot, m.Key, m.Value, m.Delete); err != nil {
			return 0, fmt.Errorf("write: mutation %d (slot %d, key %s): %w", i, m.Slot, keyForError(m.Key), err)
		}
		size += encodedSize(m.Delete, m.Key, m.Value)
	}
	r := newRequest()
	r.kind = kindWrite
	r.grow(size)
	off := 0
	for i := range muts {
		m := &muts[i]
		r.encode(&off, m.Slot, m.Delete, m.Key, m.Value)
	}
	return s.submit(ctx, r)
}

// LogEntry is one entry of the op log: the mutation written at sequence
// number Seq by the primary of Epoch. For a delete Value is empty. The zero
// value is not a valid entry (Seq starts at 1).
type LogEntry struct {
	Seq    uint64
	Epoch  uint64
	Slot   int
	Key    []byte
	Value  []byte
	Delete bool
}

// ApplyLog writes entries received from a primary as they are, with their
// Seq and Epoch, applying each to its slot and appending it to the local
// log, group-committed with other calls like Write. An empty call does
// nothing. The entries are copied before they are queued.
//
// Errors: ErrLogGap if the Seqs are not consecutive or do not continue the
// local log (the first must be LastSeq()+1 when the call commits; entries
// already applied are refused too, so a retry after an unknown outcome
// should compare LastSeq first); ErrStaleEpoch if the epochs go down, within
// the call or against the local log's last entry; the validation errors of
// Write; ErrClosed; ctx.Err() as for Write. Nothing of a refused call is
// written. Entries with an epoch above Epoch() raise it.
func (s *Store) ApplyLog(ctx context.Context, entries []LogEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(entries) == 0 {
		if s.isClosed.Load() {
			return ErrClosed
		}
		return nil
	}
	size := 0
	for i := range entries {
		e := &entries[i]
		if e.Seq == 0 || e.Seq != entries[0].Seq+uint64(i) {
			return fmt.Errorf("apply log: entry %d has seq %d after seq %d: %w", i, e.Seq, entries[0].Seq+uint64(i)-1, ErrLogGap)
		}
		if i > 0 && e.Epoch < entries[i-1].Epoch {
			return fmt.Errorf("apply log: seq %d has epoch %d after epoch %d: %w", e.Seq, e.Epoch, entries[i-1].Epoch, ErrStaleEpoch)
		}
		if err := s.validate(e.Slot, e.Key, e.Value, e.Delete); err != nil {
			return fmt.Errorf("apply log: seq %d (slot %d, key %s): %w", e.Seq, e.Slot, keyForError(e.Key), err)
		}
		size += encodedSize(e.Delete, e.Key, e.Value)
	}
	r := newRequest()
	r.kind = kindApply
	r.grow(size)
	off := 0
	for i := range entries {
		e := &entries[i]
		r.encode(&off, e.Slot, e.Delete, e.Key, e.Value)
		r.muts[i].seq, r.muts[i].epoch = e.Seq, e.Epoch
	}
	if _, err := s.submit(ctx, r); err != nil {
		return fmt.Errorf("apply log at seq %d: %w", entries[0].Seq, err)
	}
	return nil
}

// submit queues r for the committer and waits for its result or for ctx.
func (s *Store) submit(ctx context.Context, r *request) (uint64, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		r.release()
		return 0, ErrClosed
	}
	s.queue = append(s.queue, r)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // the committer is already due to look at the queue
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
	seq, err := r.lastSeq, r.err
	r.release()
	if err != nil {
		return 0, err
	}
	return seq, nil
}

// runCommitter is the single goroutine that commits queued requests. It is
// owned by the Store and stops when Close closes s.stop, failing whatever
// is still queued then.
func (s *Store) runCommitter() {
	defer close(s.committerDone)
	var batch []*request
	c := committer{s: s}
	for {
		select {
		case <-s.stop:
			s.failQueued()
			return
		default:
		}
		batch = s.takeBatch(batch[:0])
		if len(batch) == 0 {
			select {
			case <-s.wake:
			case <-s.stop:
			}
			continue
		}
		c.commit(batch)
		for i, r := range batch {
			r.done <- struct{}{}
			batch[i] = nil
		}
	}
}

// takeBatch moves the oldest queued requests into batch, as many as fit the
// commit bounds, but always at least one.
func (s *Store) takeBatch(batch []*request) []*request {
	s.mu.Lock()
	defer s.mu.Unlock()
	muts, bytes, n := 0, 0, 0
	for _, r := range s.queue {
		if n > 0 && (muts+len(r.muts) > maxCommitMutations || bytes+r.payload > maxCommitBytes) {
			break
		}
		muts += len(r.muts)
		bytes += r.payload
		n++
	}
	batch = append(batch, s.queue[:n]...)
	rest := copy(s.queue, s.queue[n:])
	clear(s.queue[rest:])
	s.queue = s.queue[:rest]
	return batch
}

func (s *Store) failQueued() {
	s.mu.Lock()
	queue := s.queue
	s.queue = nil
	s.mu.Unlock()
	for _, r := range queue {
		r.err = ErrClosed
		r.done <- struct{}{}
	}
}

// committer holds what one commit needs besides the batch; it lives on the
// committer goroutine only.
type committer struct {
	s      *Store
	st     state // the state being built by the current transaction
	trim   [seqSize]byte
	bucket map[int]*bolt.Bucket
}

// commit runs one transaction for the batch and stores each request's
// result. Requests refused on their own (a log gap, a stale epoch) get their
// error without affecting the others; a failed transaction fails them all.
func (c *committer) commit(batch []*request) {
	s := c.s
	prev := s.st.Load()
	err := s.db.Update(func(tx *bolt.Tx) error {
		c.st = *prev
		clear(c.bucket)
		if c.bucket == nil {
			c.bucket = make(map[int]*bolt.Bucket)
		}
		oplog := tx.Bucket(bucketOplog)
		// Sequence keys only grow, so full pages split the cheapest way.
		oplog.FillPercent = 1.0
		appended := 0
		for _, r := range batch {
			n, err := c.apply(tx, oplog, r)
			if err != nil {
				return err
			}
			appended += n
		}
		if err := c.trimLog(oplog, appended); err != nil {
			return err
		}
		return c.putMeta(tx.Bucket(bucketMeta), prev)
	})
	if err != nil {
		s.log.Error("datastore commit failed", "requests", len(batch), "err", err)
		err = fmt.Errorf("commit: %w", err)
		for _, r := range batch {
			if r.err == nil {
				r.err = err
			}
		}
		return
	}
	s.commits.Add(1)
	next := c.st
	s.st.Store(&next)
}

// apply adds one request to the transaction and returns how many log
// entries it appended. A returned error aborts the transaction; a refusal
// of this request alone is stored in r.err before anything is written.
func (c *committer) apply(tx *bolt.Tx, oplog *bolt.Bucket, r *request) (int, error) {
	st := &c.st
	switch r.kind {
	case kindEpoch:
		if r.epoch < st.epoch {
			r.err = fmt.Errorf("current epoch is %d: %w", st.epoch, ErrStaleEpoch)
		} else if r.epoch > st.epoch {
			st.epoch = r.epoch
			st.epochs = append(st.epochs[:len(st.epochs):len(st.epochs)], EpochStart{Epoch: r.epoch, StartSeq: st.lastSeq + 1})
		}
		r.lastSeq = st.lastSeq
		return 0, nil
	case kindApply:
		first := &r.muts[0]
		if first.seq != st.lastSeq+1 {
			r.err = fmt.Errorf("local log ends at seq %d, entries start at %d: %w", st.lastSeq, first.seq, ErrLogGap)
			return 0, nil
		}
		if first.epoch < st.logEpoch {
			r.err = fmt.Errorf("local log is at epoch %d, entries start at epoch %d: %w", st.logEpoch, first.epoch, ErrStaleEpoch)
			return 0, nil
		}
	case kindWrite:
		for i := range r.muts {
			r.muts[i].seq, r.muts[i].epoch = st.lastSeq+1+uint64(i), st.epoch
		}
	}
	for i := range r.muts {
		m := &r.muts[i]
		if m.epoch != st.logEpoch || len(st.epochs) == 0 {
			st.epochs = withEntryEpoch(st.epochs, m.seq, m.epoch)
			st.logEpoch = m.epoch
			st.epoch = max(st.epoch, m.epoch)
		}
		if err := c.applyOne(tx, oplog, m); err != nil {
			return i, err
		}
	}
	st.lastSeq = r.muts[len(r.muts)-1].seq
	r.lastSeq = st.lastSeq
	return len(r.muts), nil
}

func (c *committer) applyOne(tx *bolt.Tx, oplog *bolt.Bucket, m *encoded) error {
	b, err := c.slotBucket(tx, m.slot)
	if err != nil {
		return err
	}
	if m.del {
		err = b.Delete(m.key)
	} else {
		err = b.Put(m.key, m.record)
	}
	if err != nil {
		return fmt.Errorf("slot %d key %s: %w", m.slot, keyForError(m.key), err)
	}
	putSeq(m.seqKey, m.seq)
	sealEntry(m.entry, m.partial, m.epoch, m.seqKey)
	if err := oplog.Put(m.seqKey, m.entry); err != nil {
		return fmt.Errorf("log seq %d: %w", m.seq, err)
	}
	return nil
}

func (c *committer) slotBucket(tx *bolt.Tx, slot int) (*bolt.Bucket, error) {
	if b := c.bucket[slot]; b != nil {
		return b, nil
	}
	name := slotBucketName(slot)
	// Bucket is cheaper than CreateBucketIfNotExists, which copies the name
	// before looking it up.
	b := tx.Bucket(name[:])
	if b == nil {
		var err error
		if b, err = tx.CreateBucket(name[:]); err != nil {
			return nil, fmt.Errorf("slot %d bucket: %w", slot, err)
		}
	}
	c.bucket[slot] = b
	return b, nil
}

// trimLog deletes the oldest entries beyond the retention, at most
// 2*appended+trimSlack of them, so trimming keeps pace with appends but one
// commit never does a large amount of extra work.
func (c *committer) trimLog(oplog *bolt.Bucket, appended int) error {
	st := &c.st
	if st.lastSeq < c.s.retention {
		return nil
	}
	keepFrom := st.lastSeq - c.s.retention + 1
	for budget := 2*appended + trimSlack; st.firstSeq < keepFrom && budget > 0; budget-- {
		putSeq(c.trim[:], st.firstSeq)
		if err := oplog.Delete(c.trim[:]); err != nil {
			return fmt.Errorf("trim log seq %d: %w", st.firstSeq, err)
		}
		st.firstSeq++
	}
	return nil
}

// putMeta persists what changed in the state since prev.
func (c *committer) putMeta(meta *bolt.Bucket, prev *state) error {
	st := &c.st
	puts := []struct {
		name       []byte
		now, prior uint64
	}{
		{metaLastSeq, st.lastSeq, prev.lastSeq},
		{metaEpoch, st.epoch, prev.epoch},
		{metaLogEpoch, st.logEpoch, prev.logEpoch},
	}
	for _, p := range puts {
		if p.now == p.prior {
			continue
		}
		if err := meta.Put(p.name, encodeMetaU64(p.name, p.now)); err != nil {
			return fmt.Errorf("meta %s: %w", p.name, err)
		}
	}
	if !sameEpochs(st.epochs, prev.epochs) {
		if err := meta.Put(metaEpochs, encodeEpochs(metaEpochs, st.epochs)); err != nil {
			return fmt.Errorf("meta %s: %w", metaEpochs, err)
		}
	}
	return nil
}

func sameEpochs(a, b []EpochStart) bool {
	if len(a) != len(b) {
		return false
	}
	// Maps are replaced, never edited in place, so sharing means equal.
	return len(a) == 0 || &a[0] == &b[0]
}
