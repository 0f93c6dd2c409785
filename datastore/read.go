package datastore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// KeyRef names one key for GetMany. The zero value (empty key) is refused
// with ErrEmptyKey.
type KeyRef struct {
	Slot int
	Key  []byte
}

// GetResult is the outcome of one KeyRef: the value, or Err (ErrNotFound,
// ErrCorrupt, ErrBadSlot, a key validation error or ErrClosed; test with
// errors.Is). Value is nil whenever Err is set and non-nil otherwise.
type GetResult struct {
	Value []byte
	Err   error
}

// KV is one key and its value, as returned by Scan. Both are copies the
// caller owns.
type KV struct {
	Key   []byte
	Value []byte
}

// view runs fn in a read transaction and reports a closed store as ErrClosed.
func (s *Store) view(fn func(tx *bolt.Tx) error) error { return s.inTx(s.db.View, fn) }

// viewSettled is view between apply rounds, where the data file holds
// exactly the applied seq's state. A round that commits in parts
// (applyPart) leaves some of its entries in the file until its last
// transaction, and a reader of the file alone must not see them: a scan
// would see one write and miss an earlier one. Such a file holds
// metaApplying; viewSettled then waits for the round to end, hurrying the
// applier (after a crash the round that replays it may not have started).
// If rounds keep starting again before a transaction can begin, it begins
// one with the applier held off.
func (s *Store) viewSettled(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	for tries := 1; ; tries++ {
		s.mu.RLock()
		seen := s.applied
		s.mu.RUnlock()
		held := false
		if tries >= settledTries {
			if err := s.lockApply(ctx); err != nil {
				return fmt.Errorf("wait for the apply round in progress: %w", err)
			}
			held = true
		}
		err := s.view(func(tx *bolt.Tx) error {
			if held {
				s.applyMu.Unlock()
				held = false
			}
			if tx.Bucket(bucketMeta).Get(metaApplying) != nil {
				return errRoundInParts
			}
			return fn(tx)
		})
		if held {
			s.applyMu.Unlock()
		}
		if !errors.Is(err, errRoundInParts) {
			return err
		}
		err = s.hurryApplier(true, func() error {
			var stopped error
			err := s.waitFor(ctx, func() bool {
				stopped = s.applyErr
				if stopped == nil {
					stopped = s.unreadableLocked()
				}
				return s.applied != seen || stopped != nil
			})
			if err == nil {
				err = stopped // a failed applier, a store restoring (its file is discarded)
			}
			return err
		})
		if err != nil {
			return err
		}
	}
}

// errRoundInParts: an apply round is between the transactions it commits
// in.
var errRoundInParts = errors.New("an apply round is between its transactions")

// settledTries is how many times viewSettled tries before it holds the
// applier off.
const settledTries = 4

// update runs fn in a write transaction unless the store is closed.
func (s *Store) update(fn func(tx *bolt.Tx) error) error { return s.inTx(s.db.Update, fn) }

// inTx runs fn in a transaction of run (s.db.View or s.db.Update), turning
// a closed store into ErrClosed and a bbolt panic into ErrCorrupt.
func (s *Store) inTx(run func(func(*bolt.Tx) error) error, fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	err := guardBolt(s.dataPath, func() error { return run(fn) })
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// packer copies byte slices out of the mmap into one allocation sized in
// advance, so a batch read costs one allocation however many values it has.
// Each copy is capped so appending to it cannot overwrite its neighbour.
type packer struct{ buf []byte }

func newPacker(total int) packer { return packer{buf: make([]byte, 0, total)} }

func (p *packer) copy(b []byte) []byte {
	off := len(p.buf)
	p.buf = append(p.buf, b...)
	return p.buf[off:len(p.buf):len(p.buf)]
}

// lookup returns the stored value of key, aliasing the mmap.
func lookup(b *bolt.Bucket, slot int, key []byte) ([]byte, error) {
	if b == nil {
		return nil, ErrNotFound
	}
	rec := b.Get(key)
	if rec == nil {
		return nil, ErrNotFound
	}
	v, ok := openRecord(key, rec)
	if !ok {
		return nil, corruptRecord(slot, key, "checksum mismatch")
	}
	return v, nil
}

func slotBucket(tx *bolt.Tx, slot int) *bolt.Bucket {
	name := slotBucketName(slot)
	return tx.Bucket(name[:])
}

// Get returns a copy of the value stored under key in slot, as of the
// committed seq: the newest committed version not yet applied (kept in
// memory), else the bbolt file. It never waits for the applier. Errors:
// ErrNotFound, ErrCorrupt (naming slot and key), ErrBadSlot, ErrEmptyKey,
// ErrKeyTooLarge, ErrClosed.
func (s *Store) Get(slot int, key []byte) ([]byte, error) {
	r := s.GetMany([]KeyRef{{Slot: slot, Key: key}})[0]
	return r.Value, r.Err
}

// GetMany looks up every ref as of one committed seq, so the results are
// from one instant, and returns one result per ref in the same order. The
// values are copied into one shared allocation. It never waits for the
// applier.
func (s *Store) GetMany(refs []KeyRef) []GetResult {
	out := make([]GetResult, len(refs))
	fromFile := make([]bool, len(refs))
	pending := 0
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		for i := range out {
			out[i].Err = ErrClosed
		}
		return out
	}
	for i, ref := range refs {
		if err := s.checkKey(ref.Slot, ref.Key); err != nil {
			out[i].Err = err
			continue
		}
		if len(s.overlay) > 0 || len(s.drops) > 0 {
			if e := s.lookupOverlayLocked(uint16(ref.Slot), ref.Key, s.committed); e != nil {
				if e.del || e.drop {
					out[i].Err = ErrNotFound
				} else {
					out[i].Value = e.value
				}
				continue
			}
		}
		fromFile[i] = true
		pending++
	}
	// The read transaction starts before the applier can drop from the
	// overlay what it applies next, so together they show one instant.
	var tx *bolt.Tx
	var err error
	if pending > 0 {
		tx, err = s.db.Begin(false)
	}
	s.mu.RUnlock()
	if err != nil {
		return failResults(out, err)
	}
	if tx != nil {
		// A read-only transaction has nothing to roll back but its lock.
		defer func() { _ = tx.Rollback() }()
	}
	total, err := s.lookupFile(tx, refs, fromFile, out)
	if err != nil {
		return failResults(out, err)
	}
	p := newPacker(total)
	for i := range out {
		if out[i].Err == nil {
			out[i].Value = p.copy(out[i].Value)
		}
	}
	return out
}

// lookupFile looks up in tx the refs marked fromFile, storing the results
// in out (values aliasing the mmap), and returns the bytes of all values.
func (s *Store) lookupFile(tx *bolt.Tx, refs []KeyRef, fromFile []bool, out []GetResult) (total int, err error) {
	defer recoverBolt(s.dataPath, &err)
	lastSlot, b := -1, (*bolt.Bucket)(nil)
	for i, ref := range refs {
		if fromFile[i] {
			if ref.Slot != lastSlot {
				lastSlot, b = ref.Slot, slotBucket(tx, ref.Slot)
			}
			out[i].Value, out[i].Err = lookup(b, ref.Slot, ref.Key)
		}
		total += len(out[i].Value)
	}
	return total, nil
}

func failResults(out []GetResult, err error) []GetResult {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		err = ErrClosed
	}
	for i := range out {
		out[i] = GetResult{Err: err}
	}
	return out
}

// mergeHead is one slot's cursor in Scan's k-way merge.
type mergeHead struct {
	slot int
	c    *bolt.Cursor
	k, v []byte
}

// mergeHeap is a min-heap of cursor heads by key (then slot), hand-rolled
// because container/heap would box every element into an interface.
type mergeHeap []mergeHead

func (h mergeHeap) less(i, j int) bool {
	c := bytes.Compare(h[i].k, h[j].k)
	return c < 0 || c == 0 && h[i].slot < h[j].slot
}

func (h mergeHeap) down(i int) {
	for {
		m := 2*i + 1
		if m >= len(h) {
			return
		}
		if r := m + 1; r < len(h) && h.less(r, m) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// Scan returns the keys in [start, end) held in any of the given slots, in
// byte order, with their values, within lim. A nil start scans from the
// first key; a nil or empty end has no upper bound. Scan first waits until
// the applier has applied everything committed when it was called, then
// reads the bbolt file alone, between apply rounds (viewSettled): all
// slots in one transaction, merged through one cursor per slot, so only
// the returned pairs are ever copied. Errors: ErrBadSlot, ErrCorrupt (naming
// slot and key), ErrClosed, ctx.Err() while waiting.
func (s *Store) Scan(ctx context.Context, slots []int, start, end []byte, lim Limit) ([]KV, error) {
	slots = slices.Clone(slots)
	slices.Sort(slots)
	slots = slices.Compact(slots)
	if err := s.checkSlots(slots); err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	s.mu.RLock()
	want := s.committed
	s.mu.RUnlock()
	if err := s.waitApplied(ctx, want); err != nil {
		return nil, fmt.Errorf("scan: wait for the applier to reach seq %d: %w", want, err)
	}
	inRange := func(k []byte) bool { return k != nil && (len(end) == 0 || bytes.Compare(k, end) < 0) }
	var out []KV
	err := s.viewSettled(ctx, func(tx *bolt.Tx) error {
		h := make(mergeHeap, 0, len(slots))
		for _, slot := range slots {
			b := slotBucket(tx, slot)
			if b == nil {
				continue
			}
			c := b.Cursor()
			k, v := c.Seek(start)
			if inRange(k) {
				h = append(h, mergeHead{slot: slot, c: c, k: k, v: v})
			}
		}
		for i := len(h)/2 - 1; i >= 0; i-- {
			h.down(i)
		}
		total := 0
		for len(h) > 0 && (lim.Entries <= 0 || len(out) < lim.Entries) && (lim.Bytes <= 0 || total < lim.Bytes) {
			top := &h[0]
			v, ok := openRecord(top.k, top.v)
			if !ok {
				return corruptRecord(top.slot, top.k, "checksum mismatch")
			}
			out = append(out, KV{Key: top.k, Value: v})
			total += len(top.k) + len(v)
			if top.k, top.v = top.c.Next(); !inRange(top.k) {
				h[0] = h[len(h)-1]
				h = h[:len(h)-1]
			}
			h.down(0)
		}
		p := newPacker(total)
		for i := range out {
			out[i] = KV{Key: p.copy(out[i].Key), Value: p.copy(out[i].Value)}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	return out, nil
}

// ApplyThrough waits until the applier has applied seq, hurrying it past
// its batching delay, so that what is committed now is in the bbolt file
// without waiting for the next round (a slot migration's target applies
// what it imports as it goes). The rounds keep their background priority
// unless urgent (someone waits on them). Errors: the applier's failure,
// ctx.Err() (also when seq is never committed).
func (s *Store) ApplyThrough(ctx context.Context, seq uint64, urgent bool) error {
	s.mu.RLock()
	done := s.applied >= seq
	s.mu.RUnlock()
	if done {
		return nil
	}
	return s.hurryApplier(urgent, func() error {
		var stopped error
		err := s.waitFor(ctx, func() bool {
			stopped = s.applyErr
			return s.applied >= seq || stopped != nil
		})
		if err == nil && stopped != nil && s.AppliedSeq() < seq {
			err = stopped
		}
		return err
	})
}

// waitApplied waits until the applier reached seq, hurrying it at normal
// priority: a reader waits on the round.
func (s *Store) waitApplied(ctx context.Context, seq uint64) error {
	return s.ApplyThrough(ctx, seq, true)
}
