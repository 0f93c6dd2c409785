package datastore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
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
	// formatVersion 6 writes the log in record format v2 (record.go),
	// drops and marks included, with commit records that say how far the
	// log was synced, keeps per-slot stats (digest.go), and commits apply
	// rounds in parts, its file then holding entries past the applied seq
	// (metaApplying), which an older build would let a truncation take
	// back; version 2 stores, whose logs hold v1 records, version 3 stores,
	// which have no stats, and version 4 and 5 stores, whose commit records
	// are shorter or whose rounds were whole, are upgraded on Open.
	formatVersion        = 6
	formatVersionV5      = 5
	formatVersionV4      = 4
	formatVersionNoStats = 3
	formatVersionV1Log   = 2

	defaultMaxKeySize   = 4096
	defaultMaxValueSize = 4 << 20
	defaultRetention    = 1 << 20
	defaultTailBytes    = 16 << 20
	defaultOverlayLimit = 128 << 20

	// maxSlots follows from the 2-byte slot in bucket names and log records.
	maxSlots = 1 << 16
	// Limits imposed by bbolt (its MaxKeySize; its MaxValueSize with room
	// for our record header).
	maxMaxKeySize   = bolt.MaxKeySize
	maxMaxValueSize = 1 << 30

	// initialMmapSize reserves address space (not memory or disk) so the file
	// can grow to 16 GiB without a remap. A remap waits for every open read
	// transaction, and the apply round that needs it, and the writes behind
	// that round, wait with it: a new secondary's or a backup's copy holds
	// one for as long as it runs. Past the reservation bbolt remaps at every
	// further GiB. (etcd reserves 10 GiB the same way; a read-only shared
	// mapping costs no memory until its pages are read.)
	initialMmapSize = 16 << 30

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
	// Observer receives the engine's timings, for metrics; nil → none.
	Observer Observer

	// Tuning for tests; 0 means the default.
	segmentSize  int64
	tailBytes    int64
	overlayLimit int64
	applyBytes   int64
	applyDirty   int64
	logTags      int
	hooks        hooks
}

// Observer is told of each group commit and apply round. It is called on
// the syncer and applier goroutines, so it must return at once.
type Observer interface {
	// GroupCommit: entries written to the log (one or two batches) were
	// made durable by an fdatasync that took fsync.
	GroupCommit(entries int, fsync time.Duration)
	// Applied: one apply round wrote entries to the data file in took.
	Applied(entries int, took time.Duration)
}

type noObserver struct{}

func (noObserver) GroupCommit(int, time.Duration) {}
func (noObserver) Applied(int, time.Duration)     {}

// hooks let tests stop the engine at its dangerous moments.
type hooks struct {
	// beforeSync runs on the syncer after a batch is written and
	// published to ReadLog, before its fdatasync.
	beforeSync func()
	// beforeApply runs on the applier before each apply round; an error
	// fails the round.
	beforeApply func() error
	// betweenApplyParts runs on the applier between the transactions of
	// a round that commits in parts; an error fails the round.
	betweenApplyParts func() error
	// beforeTailRead runs in CommittedSlotDigests after its read
	// transaction began, before it copies the tail's entries.
	beforeTailRead func()
	// keyHash replaces the overlay's hash (tests make keys collide).
	keyHash func(slot uint16, key []byte) uint64
}

// Store is one open datastore directory. Its methods are safe for
// concurrent use. The zero value is not usable: create a Store with Open,
// and stop its goroutines with Close.
type Store struct {
	dir       string
	walDir    string
	dataPath  string // the bbolt file
	db        *bolt.DB
	lock      *DirLock
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
	observer  Observer

	// mu guards everything below it up to the committer-only fields.
	mu        sync.RWMutex
	queue     []*request
	closed    bool
	restoring bool
	restores  uint64 // restores started: see CommittedSlotDigests
	failErr   error
	failed    chan struct{} // closed when failErr is set
	applyErr  error         // why the applier stopped
	logState                // written by the committer only
	durable   uint64        // newest seq fdatasynced
	inFlight  int           // commits written or queued for the syncer and not yet answered
	committed uint64        // reads and the applier see seqs <= committed
	target    uint64        // highest seq SetCommitted asked for
	applied   uint64        // newest seq in bbolt
	// tail holds the newest entries with consecutive seqs, at least all
	// those above applied; it serves ReadLog and feeds the applier.
	tail         tailLog
	tailBytes    int64
	overlay      map[uint64]uint64   // see overlay.go
	drops        map[uint16][]uint64 // seqs of the unapplied drops of each slot, ascending
	overlayBytes int64               // cost of the unapplied entries
	pace         pacer               // writers' pace while a round runs
	// costedBytes is the cost of the entries applied+1..costedSeq, all
	// committed (see committedBytesLocked).
	costedSeq    uint64
	costedBytes  int64
	hashSeed     maphash.Seed
	segments     []segment
	readHints    readHints      // see log.go
	pins         map[uint64]int // Snapshot retention pins by applied seq
	restoredTags []TagSeq       // see snaptags.go; replaced, never edited in place
	logTags      tagRing        // the tags Open's log scan met, until TakeLogTags
	hurry        int            // waiting for the applier: it skips its batching delay
	boost        int            // of hurry, those a request waits on: rounds run at normal priority
	// applyArmed: the applier waits for a round to be due, its delay
	// running; a move of the committed seq wakes it only once one is (a
	// wake-up per group commit cost a context switch each).
	applyArmed bool
	changed    chan struct{} // closed and replaced on every state change
	// logChanged is closed and replaced on a state change that moved the
	// log's end (or closed the store), and logNotified is the end it
	// told: a primary's shippers wait on it alone, as waking them for
	// every watermark and fdatasync made them queue behind their own
	// spurious wake-ups.
	logChanged  chan struct{}
	logNotified uint64
	logWaiters  atomic.Int32 // in WaitLog, woken or not

	// Owned by the committer goroutine (and by Open before it starts).
	wal     *os.File
	walSize int64 // bytes of records in the active segment (zeros of a spare may follow)
	walBuf  []byte
	// walGrows: the active segment is not a spare; each batch extends it.
	walGrows bool
	spares   *spares

	applyMu sync.Mutex // held by an apply cycle; excludes it from truncation and restore
	// applyingTo is the last seq of a round that committed in parts and
	// was cut short by a crash: the file holds some of its entries. Set by
	// Open, cleared once a round reached it; guarded by applyMu.
	applyingTo uint64
	applyBytes int64 // the entry cost that starts a round, and the most it applies
	applyDirty int64 // the dirty page, key and record bytes after which a round's transaction commits
	commits    atomic.Uint64
	applies    atomic.Uint64
	// synced is how far the active segment is known fdatasynced: the
	// syncer raises it, the committer writes it into each commit record
	// and resets it when the segment changes, with no commit in flight.
	synced atomic.Int64

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
// ErrLocked. After Open, CommittedSeq() is the applied seq (or the end of
// an apply round a crash cut short between its parts, which the file holds
// some of), or the durable seq with Options.AutoCommit: log entries beyond
// it are known durable but not known acknowledged.
//
// Errors: ErrBadOptions, ErrSlotsMismatch, ErrLocked, ErrFormat, ErrCorrupt
// (a damaged data.db page or meta record, damage to the log other than a
// torn tail, or a log that does not continue the applied state;
// one line naming the file and offset, see SetAside for the way out), and
// I/O or bbolt errors.
func Open(dir string, opts Options) (*Store, error) {
	if err := checkOptions(&opts); err != nil {
		return nil, fmt.Errorf("datastore: open %s: %w", dir, err)
	}
	if opts.Observer == nil {
		opts.Observer = noObserver{}
	}
	s := &Store{
		dir:           dir,
		walDir:        filepath.Join(dir, walDir),
		dataPath:      filepath.Join(dir, dataFile),
		maxKey:        opts.MaxKeySize,
		maxValue:      opts.MaxValueSize,
		noSync:        opts.NoSync,
		auto:          opts.AutoCommit,
		retention:     opts.LogRetention,
		segSize:       opts.segmentSize,
		tailMax:       opts.tailBytes,
		overMax:       opts.overlayLimit,
		applyBytes:    opts.applyBytes,
		applyDirty:    opts.applyDirty,
		hooks:         opts.hooks,
		log:           opts.Logger,
		observer:      opts.Observer,
		logTags:       tagRing{max: opts.logTags},
		overlay:       make(map[uint64]uint64),
		drops:         make(map[uint16][]uint64),
		hashSeed:      maphash.MakeSeed(),
		pins:          make(map[uint64]int),
		changed:       make(chan struct{}),
		logChanged:    make(chan struct{}),
		failed:        make(chan struct{}),
		wake:          make(chan struct{}, 1),
		applyWake:     make(chan struct{}, 1),
		stop:          make(chan struct{}),
		committerDone: make(chan struct{}),
		applierDone:   make(chan struct{}),
	}
	start := time.Now()
	took, err := s.open(opts.Slots)
	if err != nil {
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
	took.mark("spares")
	s.spares = sp
	s.logNotified = s.last
	go s.runCommitter()
	go s.runApplier()
	s.kickApplier()
	s.log.Info("datastore opened", append([]any{"dir", dir, "slots", s.slots, "applied", s.applied,
		"last_seq", s.last, "committed", s.committed, "epoch", s.epoch, "segments", len(s.segments),
		"log_tags", s.logTags.len(), "took", time.Since(start).Round(time.Millisecond)}, took.attrs...)...)
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
	setDefault(&o.logTags, MaxLogTags)
	setDefault64(&o.segmentSize, defaultSegmentSize)
	setDefault64(&o.tailBytes, defaultTailBytes)
	setDefault64(&o.overlayLimit, defaultOverlayLimit)
	setDefault64(&o.applyBytes, maxApplyBytes)
	setDefault64(&o.applyDirty, maxApplyDirty)
	if o.LogRetention == 0 {
		o.LogRetention = defaultRetention
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// phases times the steps of Open for its log line, so an operator sees
// where a slow start went.
type phases struct {
	last  time.Time
	attrs []any
}

// mark ends the phase named name.
func (p *phases) mark(name string) {
	now := time.Now()
	p.attrs = append(p.attrs, name, now.Sub(p.last).Round(time.Millisecond))
	p.last = now
}

// open does Open's work, timing its phases; on error the caller releases
// what it acquired.
func (s *Store) open(slots int) (*phases, error) {
	took := &phases{last: time.Now()}
	if err := os.MkdirAll(s.walDir, 0o755); err != nil {
		return nil, err
	}
	if err := s.acquireLock(); err != nil {
		return nil, err
	}
	took.mark("lock")
	// The free list is kept in the file (NoFreelistSync false): without it
	// bbolt rebuilds it on every open by reading every page of the file,
	// which dominated a restart. checkPageTree checks the kept list.
	db, err := openDataFile(s.dataPath, &bolt.Options{
		Timeout:         lockTimeout,
		NoSync:          s.noSync,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: initialMmapSize,
		PageSize:        pageSize,
	}, took)
	if errors.Is(err, syscall.ENOMEM) {
		return nil, fmt.Errorf("map data file %s (%d GiB of address space; an address-space limit such as ulimit -v must allow it): %w",
			s.dataPath, initialMmapSize>>30, err)
	}
	if err != nil {
		return nil, err
	}
	s.db = db
	if err := guardBolt(s.dataPath, func() error { return s.loadMeta(slots) }); err != nil {
		return nil, err
	}
	took.mark("meta")
	if err := s.recoverLog(); err != nil {
		return nil, err
	}
	took.mark("log")
	s.durable = s.last
	// The entries of a round cut short between its parts were committed
	// (the applier takes nothing else), and some are in the file: no
	// truncation may take them back.
	if s.applyingTo > s.last {
		return nil, fmt.Errorf("%s holds entries through seq %d, the log ends at seq %d: %w", dataFile, s.applyingTo, s.last, ErrCorrupt)
	}
	s.committed = max(s.applied, s.applyingTo)
	s.target = s.committed
	if s.auto {
		s.committed, s.target = s.last, math.MaxUint64
	}
	s.epochs = clampEpochs(s.epochs, s.last+1)
	s.logEpoch = epochAt(s.epochs, s.last)
	s.trimSegments()
	took.mark("trim")
	return took, nil
}

// acquireLock takes the store directory's lock (LockDir).
func (s *Store) acquireLock() error {
	l, err := LockDir(s.dir)
	if err != nil {
		return err
	}
	s.lock = l
	return nil
}

// DirLock is an exclusive lock on a directory, held by this process until
// Close.
type DirLock struct{ f *os.File }

// LockDir takes an exclusive flock on dir/LOCK, retrying until lockTimeout
// (ErrLocked if another process holds it). The kernel drops the lock when
// the process dies, however it dies: whoever holds it knows that no earlier
// holder still runs on this machine.
func LockDir(dir string) (*DirLock, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(lockTimeout)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &DirLock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			_ = f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, &lockedError{path: dir}
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close releases the lock.
func (l *DirLock) Close() error { return l.f.Close() }

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

// Close stops the committer once the batches in flight are synced
// (failing writes still queued with ErrClosed), stops the applier after
// its transaction in progress, then closes the log, waits for open reads
// and closes the bbolt file, and drops the directory lock. Unapplied log
// entries stay in the log and are replayed by the next Open. It is
// idempotent: later calls return the first call's result.
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

// notifyLocked wakes everyone waiting for a state change, and WaitLog's
// waiters when the log's end moved or the store closed. s.mu must be held
// for writing.
func (s *Store) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
	if s.last != s.logNotified || s.closed {
		s.logNotified = s.last
		close(s.logChanged)
		s.logChanged = make(chan struct{})
	}
}

// waitFor blocks until cond (called with s.mu read-locked) holds, ctx ends
// or the store is closed.
func (s *Store) waitFor(ctx context.Context, cond func() bool) error {
	return s.waitOn(ctx, &s.changed, cond)
}

// waitOn is waitFor woken by *changed, one of the store's change
// channels.
func (s *Store) waitOn(ctx context.Context, changed *chan struct{}, cond func() bool) error {
	for {
		s.mu.RLock()
		ok, closed, ch := cond(), s.closed, *changed
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
// durable seq allows and, when it moved, wakes the applier unless it
// already waits, armed, for a round that is not due yet.
func (s *Store) advanceCommittedLocked() {
	if c := min(s.target, s.durable); c > s.committed {
		s.committed = c
		s.notifyLocked()
		if !s.applyArmed || s.applyDueLocked() {
			s.kickApplier()
		}
	}
}
