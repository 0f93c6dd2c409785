package datastore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	formatVersion = 2

	defaultMaxKeySize   = 4096
	defaultMaxValueSize = 4 << 20
	defaultRetention    = 1 << 20
	defaultTailBytes    = 64 << 20
	defaultOverlayLimit = 256 << 20

	// maxSlots follows from the 2-byte slot in bucket names and log records.
	maxSlots = 1 << 16
	// Limits imposed by bbolt (its MaxKeySize; its MaxValueSize with room
	// for our record header).
	maxMaxKeySize   = bolt.MaxKeySize
	maxMaxValueSize = 1 << 30

	// initialMmapSize reserves address space (not memory or disk) so the file
	// can grow to 1 GiB without a remap; a remap waits for every open read
	// transaction, which would stall the applier behind a long Scan or
	// Snapshot.
	initialMmapSize = 1 << 30

	// pageSize of a new data file (an existing one keeps its own). Each
	// apply round rewrites most leaf pages; 16 KiB pages mean a quarter of
	// the pages to split, write and free, and measured ~20 % less CPU per
	// round than 4 KiB (200,000 puts over 100,000 keys: ~315 ms vs ~390 ms).
	pageSize = 16 << 10

	dataFile = "data.db"
	lockFile = "LOCK"
)

// lockTimeout bounds how long Open waits for another process's lock.
var lockTimeout = time.Second

var (
	metaVersion   = []byte("version")
	metaSlots     = []byte("slots")
	metaEpoch     = []byte("epoch")
	metaApplied   = []byte("applied")
	metaEpochs    = []byte("epochs")
	metaRestoring = []byte("restoring")
)

// Options configure Open. The zero value is usable to reopen an existing
// store; a new store needs Slots.
type Options struct {
	// Slots is the number of virtual slots, 1 to 65536. Required when the
	// store is created; 0 on reopen uses the stored value, and any other
	// value must equal it (else ErrSlotsMismatch).
	Slots int
	// MaxKeySize bounds keys (1..MaxKeySize bytes of arbitrary content);
	// 0 means 4096. At most 32768.
	MaxKeySize int
	// MaxValueSize bounds values (empty values are allowed); 0 means 4 MiB.
	// At most 1 GiB.
	MaxValueSize int
	// NoSync skips every fsync (log and applied state): acknowledged writes
	// may be lost in a crash. For tests and benchmarks only.
	NoSync bool
	// AutoCommit makes Write, ApplyLog and Open advance the committed seq to
	// the durable seq themselves, so a write is visible to reads as soon as
	// it returns. False (the zero value) leaves that to SetCommitted, as a
	// replicated node needs.
	AutoCommit bool
	// LogRetention is how many of the newest log entries are kept for
	// ReadLog at least; 0 means 1<<20. Whole segments are deleted once all
	// their entries are older and applied.
	LogRetention uint64
	// Logger receives one line per notable event; nil discards them.
	Logger *slog.Logger

	// Tuning for tests; 0 means the default.
	segmentSize  int64
	tailBytes    int64
	overlayLimit int64
	hooks        hooks
}

// hooks let tests stop the engine at its dangerous moments.
type hooks struct {
	// beforeSync runs on the committer after a batch is written and
	// published to ReadLog, before its fdatasync.
	beforeSync func()
	// beforeApply runs on the applier before each bbolt transaction.
	beforeApply func()
	// keyHash replaces the overlay's hash (tests make keys collide).
	keyHash func(slot uint16, key []byte) uint64
}

// Store is one open datastore directory. Its methods are safe for
// concurrent use. The zero value is not usable: create a Store with Open,
// and stop its goroutines with Close.
type Store struct {
	dir       string
	walDir    string
	db        *bolt.DB
	lock      *os.File
	slots     int
	maxKey    int
	maxValue  int
	noSync    bool
	auto      bool
	retention uint64
	segSize   int64
	tailMax   int64
	overMax   int64
	hooks     hooks
	log       *slog.Logger

	// mu guards everything below it up to the committer-only fields.
	mu        sync.RWMutex
	queue     []*request
	closed    bool
	restoring bool
	failErr   error
	logState         // written by the committer only
	durable   uint64 // newest seq fdatasynced
	committed uint64 // reads and the applier see seqs <= committed
	target    uint64 // highest seq SetCommitted asked for
	applied   uint64 // newest seq in bbolt
	// tail holds the newest entries with consecutive seqs, at least all
	// those above applied; it serves ReadLog and feeds the applier.
	tail         tailLog
	tailBytes    int64
	overlay      map[uint64]uint64 // see overlay.go
	overlayBytes int64             // cost of the unapplied entries
	hashSeed     maphash.Seed
	segments     []segment
	pins         map[uint64]int // Snapshot retention pins by applied seq
	hurry        int            // readers waiting for the applier
	changed      chan struct{}  // closed and replaced on every state change

	// Owned by the committer goroutine (and by Open before it starts).
	wal     *os.File
	walSize int64 // bytes of records in the active segment (zeros of a spare may follow)
	walBuf  []byte
	// walGrows: the active segment is not a spare; each batch extends it.
	walGrows bool
	spares   *spares

	applyMu sync.Mutex // held by an apply cycle; excludes it from truncation and restore
	commits atomic.Uint64
	applies atomic.Uint64

	wake          chan struct{}
	applyWake     chan struct{}
	stop          chan struct{}
	committerDone chan struct{}
	applierDone   chan struct{}
	closeOnce     sync.Once
	closeErr      error
}

type lockedError struct{ path string }

func (e *lockedError) Error() string {
	return fmt.Sprintf("datastore: %s is locked by another process", e.path)
}

func (e *lockedError) Is(target error) bool { return target == ErrLocked }

// Open opens the store in directory dir, creating it if missing, recovers
// it (replaying the write-ahead log above the applied seq into memory) and
// starts its committer and applier. When another process holds the
// directory, Open gives up after about a second with an error that wraps
// ErrLocked. After Open, CommittedSeq() is the applied seq, or the durable
// seq with Options.AutoCommit: log entries beyond the applied seq are known
// durable but not known acknowledged.
//
// Errors: ErrBadOptions, ErrSlotsMismatch, ErrLocked, ErrFormat, ErrCorrupt
// (meta records, a damaged log record other than a torn tail of the newest
// segment, or a log that does not continue the applied state), and I/O or
// bbolt errors.
func Open(dir string, opts Options) (*Store, error) {
	if err := checkOptions(&opts); err != nil {
		return nil, fmt.Errorf("datastore: open %s: %w", dir, err)
	}
	s := &Store{
		dir:           dir,
		walDir:        filepath.Join(dir, walDir),
		maxKey:        opts.MaxKeySize,
		maxValue:      opts.MaxValueSize,
		noSync:        opts.NoSync,
		auto:          opts.AutoCommit,
		retention:     opts.LogRetention,
		segSize:       opts.segmentSize,
		tailMax:       opts.tailBytes,
		overMax:       opts.overlayLimit,
		hooks:         opts.hooks,
		log:           opts.Logger,
		overlay:       make(map[uint64]uint64),
		hashSeed:      maphash.MakeSeed(),
		pins:          make(map[uint64]int),
		changed:       make(chan struct{}),
		wake:          make(chan struct{}, 1),
		applyWake:     make(chan struct{}, 1),
		stop:          make(chan struct{}),
		committerDone: make(chan struct{}),
		applierDone:   make(chan struct{}),
	}
	if err := s.open(opts.Slots); err != nil {
		// The open error is what the operator needs; a close error on top
		// of it adds nothing.
		_ = s.release()
		var locked *lockedError
		if errors.As(err, &locked) {
			return nil, err
		}
		return nil, fmt.Errorf("datastore: open %s: %w", dir, err)
	}
	sp, err := startSpares(s.walDir, s.segSize, s.noSync, s.log)
	if err != nil {
		_ = s.release()
		return nil, fmt.Errorf("datastore: open %s: %w", dir, err)
	}
	s.spares = sp
	go s.runCommitter()
	go s.runApplier()
	s.kickApplier()
	s.log.Info("datastore opened", "dir", dir, "slots", s.slots, "applied", s.applied,
		"last_seq", s.last, "committed", s.committed, "epoch", s.epoch, "segments", len(s.segments))
	return s, nil
}

func checkOptions(o *Options) error {
	if o.Slots < 0 || o.Slots > maxSlots {
		return fmt.Errorf("slots %d outside [1, %d]: %w", o.Slots, maxSlots, ErrBadOptions)
	}
	if o.MaxKeySize < 0 || o.MaxKeySize > maxMaxKeySize {
		return fmt.Errorf("max key size %d outside [1, %d]: %w", o.MaxKeySize, maxMaxKeySize, ErrBadOptions)
	}
	if o.MaxValueSize < 0 || o.MaxValueSize > maxMaxValueSize {
		return fmt.Errorf("max value size %d outside [1, %d]: %w", o.MaxValueSize, maxMaxValueSize, ErrBadOptions)
	}
	setDefault := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setDefault64 := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	setDefault(&o.MaxKeySize, defaultMaxKeySize)
	setDefault(&o.MaxValueSize, defaultMaxValueSize)
	setDefault64(&o.segmentSize, defaultSegmentSize)
	setDefault64(&o.tailBytes, defaultTailBytes)
	setDefault64(&o.overlayLimit, defaultOverlayLimit)
	if o.LogRetention == 0 {
		o.LogRetention = defaultRetention
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// open does Open's work; on error the caller releases what it acquired.
func (s *Store) open(slots int) error {
	if err := os.MkdirAll(s.walDir, 0o755); err != nil {
		return err
	}
	if err := s.acquireLock(); err != nil {
		return err
	}
	db, err := bolt.Open(filepath.Join(s.dir, dataFile), 0o600, &bolt.Options{
		Timeout:         lockTimeout,
		NoSync:          s.noSync,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: initialMmapSize,
		PageSize:        pageSize,
	})
	if err != nil {
		return err
	}
	s.db = db
	if err := s.loadMeta(slots); err != nil {
		return err
	}
	if err := s.recoverLog(); err != nil {
		return err
	}
	s.durable = s.last
	s.committed = s.applied
	s.target = s.applied
	if s.auto {
		s.committed, s.target = s.last, math.MaxUint64
	}
	s.epochs = clampEpochs(s.epochs, s.last+1)
	s.logEpoch = epochAt(s.epochs, s.last)
	s.trimSegments()
	return nil
}

// acquireLock takes an exclusive flock on DIR/LOCK, retrying until
// lockTimeout; the kernel drops it when the process dies.
func (s *Store) acquireLock() error {
	path := filepath.Join(s.dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(lockTimeout)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			s.lock = f
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			_ = f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return &lockedError{path: s.dir}
			}
			return fmt.Errorf("lock %s: %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// release closes whatever Open acquired; errors are reported by the caller.
func (s *Store) release() error {
	var errs []error
	if s.wal != nil {
		errs = append(errs, s.wal.Close())
		s.wal = nil
	}
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	if s.lock != nil {
		// Closing the file drops the flock.
		errs = append(errs, s.lock.Close())
	}
	return errors.Join(errs...)
}

// loadMeta reads the meta records, creating them in a new store, and
// finishes a restore that a crash interrupted by discarding its data and
// log: the flag is cleared only after the log files are gone, so a crash
// in between repeats the discard rather than replaying the old log.
func (s *Store) loadMeta(slots int) error {
	discard := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			if err := s.create(tx, slots); err != nil {
				return err
			}
		}
		if err := s.readMeta(tx, slots); err != nil {
			return err
		}
		if tx.Bucket(bucketMeta).Get(metaRestoring) == nil {
			return nil
		}
		discard = true
		s.applied = 0
		if err := wipeSlots(tx); err != nil {
			return err
		}
		return putMeta(tx, metaApplied, 0)
	})
	if err != nil || !discard {
		return err
	}
	s.log.Warn("datastore discarded an unfinished restore", "dir", s.dir)
	if err := s.removeSegments(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(metaRestoring) })
}

func (s *Store) create(tx *bolt.Tx, slots int) error {
	if slots == 0 {
		return fmt.Errorf("new store needs Options.Slots: %w", ErrBadOptions)
	}
	// A bbolt file without our meta bucket but with other buckets is some
	// other program's data: refuse rather than mix ours into it.
	if k, _ := tx.Cursor().First(); k != nil {
		return fmt.Errorf("bucket %q present but no meta bucket: %w", k, ErrFormat)
	}
	if _, err := tx.CreateBucket(bucketMeta); err != nil {
		return err
	}
	for _, p := range []struct {
		name []byte
		v    uint64
	}{{metaVersion, formatVersion}, {metaSlots, uint64(slots)}, {metaEpoch, 0}, {metaApplied, 0}} {
		if err := putMeta(tx, p.name, p.v); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(metaEpochs, encodeEpochs(metaEpochs, nil))
}

func putMeta(tx *bolt.Tx, name []byte, v uint64) error {
	if err := tx.Bucket(bucketMeta).Put(name, encodeMetaU64(name, v)); err != nil {
		return fmt.Errorf("meta %s: %w", name, err)
	}
	return nil
}

// putEpochs persists the epoch state.
func putEpochs(tx *bolt.Tx, epoch uint64, epochs []EpochStart) error {
	if err := putMeta(tx, metaEpoch, epoch); err != nil {
		return err
	}
	if err := tx.Bucket(bucketMeta).Put(metaEpochs, encodeEpochs(metaEpochs, epochs)); err != nil {
		return fmt.Errorf("meta %s: %w", metaEpochs, err)
	}
	return nil
}

func (s *Store) readMeta(tx *bolt.Tx, slots int) error {
	version, err := metaU64(tx, metaVersion)
	if err != nil {
		return err
	}
	if version != formatVersion {
		return fmt.Errorf("format version %d, this build reads %d: %w", version, formatVersion, ErrFormat)
	}
	stored, err := metaU64(tx, metaSlots)
	if err != nil {
		return err
	}
	if slots != 0 && uint64(slots) != stored {
		return fmt.Errorf("store has %d slots, options say %d: %w", stored, slots, ErrSlotsMismatch)
	}
	if stored == 0 || stored > maxSlots {
		return fmt.Errorf("meta record slots is %d: %w", stored, ErrCorrupt)
	}
	if s.epoch, err = metaU64(tx, metaEpoch); err != nil {
		return err
	}
	if s.applied, err = metaU64(tx, metaApplied); err != nil {
		return err
	}
	if s.epochs, err = decodeEpochs(metaEpochs, tx.Bucket(bucketMeta).Get(metaEpochs)); err != nil {
		return err
	}
	s.slots = int(stored)
	return nil
}

// metaU64 reads and checks one numeric meta record.
func metaU64(tx *bolt.Tx, name []byte) (uint64, error) {
	return decodeMetaU64(name, tx.Bucket(bucketMeta).Get(name))
}

// wipeSlots deletes every slot bucket.
func wipeSlots(tx *bolt.Tx) error {
	var names [][]byte
	c := tx.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if _, ok := slotOfBucketName(k); ok && v == nil {
			names = append(names, k)
		}
	}
	for _, name := range names {
		if err := tx.DeleteBucket(name); err != nil {
			return fmt.Errorf("delete bucket %q: %w", name, err)
		}
	}
	return nil
}

// removeSegments deletes every log file.
func (s *Store) removeSegments() error {
	segs, err := listSegments(s.walDir)
	if err != nil {
		return err
	}
	for _, seg := range segs {
		if err := os.Remove(seg.path); err != nil {
			return err
		}
	}
	return syncDir(s.walDir)
}

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

// newEntry copies key and value into one allocation.
func newEntry(slot uint16, del bool, key, value []byte) entry {
	if del {
		value = nil
	}
	buf := make([]byte, len(key)+len(value))
	copy(buf, key)
	copy(buf[len(key):], value)
	e := entry{slot: slot, del: del, key: buf[:len(key):len(key)]}
	if !del {
		e.value = buf[len(key):]
	}
	return e
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

// Close stops the committer after the batch in progress (failing writes
// still queued with ErrClosed), stops the applier after its transaction in
// progress, then closes the log, waits for open reads and closes the bbolt
// file, and drops the directory lock. Unapplied log entries stay in the log
// and are replayed by the next Open. It is idempotent: later calls return
// the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.notifyLocked()
		s.mu.Unlock()
		close(s.stop)
		<-s.committerDone
		<-s.applierDone
		s.spares.close()
		if err := s.release(); err != nil {
			s.closeErr = fmt.Errorf("datastore: close %s: %w", s.dir, err)
		}
		s.log.Info("datastore closed", "dir", s.dir, "last_seq", s.last, "applied", s.applied, "err", s.closeErr)
	})
	return s.closeErr
}

// notifyLocked wakes everyone waiting for a state change. s.mu must be
// held for writing.
func (s *Store) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitFor blocks until cond (called with s.mu read-locked) holds, ctx ends
// or the store is closed.
func (s *Store) waitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.RLock()
		ok, closed, ch := cond(), s.closed, s.changed
		s.mu.RUnlock()
		switch {
		case ok:
			return nil
		case closed:
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Slots returns the number of virtual slots, fixed when the store was
// created.
func (s *Store) Slots() int { return s.slots }

// MaxKeySize returns the largest key accepted, in bytes.
func (s *Store) MaxKeySize() int { return s.maxKey }

// MaxValueSize returns the largest value accepted, in bytes.
func (s *Store) MaxValueSize() int { return s.maxValue }

// LastSeq returns the sequence number of the newest log entry written
// (possibly not yet fsynced; see DurableSeq); 0 for a new store. It only
// goes down through TruncateAfter and Restore.
func (s *Store) LastSeq() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.last
}

// DurableSeq returns the sequence number of the newest fsynced log entry.
func (s *Store) DurableSeq() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.durable
}

// CommittedSeq returns the high watermark: reads see exactly the entries
// at or below it. It never exceeds DurableSeq and never goes down.
func (s *Store) CommittedSeq() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.committed
}

// AppliedSeq returns the newest sequence number stored in the bbolt file;
// it trails CommittedSeq while the applier works.
func (s *Store) AppliedSeq() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// SetCommitted raises the committed seq to seq, or to DurableSeq() if that
// is lower, in which case the committed seq follows the durable seq up to
// seq as the log is fsynced. Lower values than before are ignored. A
// single-node caller passes the seq Write returned; a replicated primary the
// seq its in-sync followers acknowledged; a follower its primary's high
// watermark.
func (s *Store) SetCommitted(seq uint64) {
	s.mu.Lock()
	s.target = max(s.target, seq)
	s.advanceCommittedLocked()
	s.mu.Unlock()
}

// advanceCommittedLocked moves committed towards target as far as the
// durable seq allows and wakes the applier when it moved.
func (s *Store) advanceCommittedLocked() {
	if c := min(s.target, s.durable); c > s.committed {
		s.committed = c
		s.notifyLocked()
		s.kickApplier()
	}
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

func (s *Store) checkSlot(slot int) error {
	if slot < 0 || slot >= s.slots {
		return fmt.Errorf("slot %d outside [0, %d): %w", slot, s.slots, ErrBadSlot)
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
