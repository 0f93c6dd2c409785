package datastore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

const (
	formatVersion = 1

	defaultMaxKeySize   = 4096
	defaultMaxValueSize = 4 << 20
	defaultRetention    = 1 << 20

	// maxSlots follows from the 2-byte slot in bucket names and log entries.
	maxSlots = 1 << 16
	// Limits imposed by bbolt (its MaxKeySize; its MaxValueSize with room
	// for our record and log entry headers).
	maxMaxKeySize   = bolt.MaxKeySize
	maxMaxValueSize = 1 << 30

	// initialMmapSize reserves address space (not memory or disk) so the file
	// can grow to 1 GiB without a remap; a remap waits for every open read
	// transaction, which would stall commits behind a long Scan or Snapshot.
	initialMmapSize = 1 << 30
)

// lockTimeout bounds how long Open waits for another process's file lock.
var lockTimeout = time.Second

var (
	metaVersion  = []byte("version")
	metaSlots    = []byte("slots")
	metaEpoch    = []byte("epoch")
	metaLastSeq  = []byte("lastseq")
	metaLogEpoch = []byte("logepoch")
	metaEpochs   = []byte("epochs")
)

// Options configure Open. The zero value is usable to reopen an existing
// store; a new store needs Slots.
type Options struct {
	// Slots is the number of virtual slots, 1 to 65536. Required when the
	// file is created; 0 on reopen uses the stored value, and any other value
	// must equal it (else ErrSlotsMismatch).
	Slots int
	// MaxKeySize bounds keys (1..MaxKeySize bytes of arbitrary content);
	// 0 means 4096. At most 32768.
	MaxKeySize int
	// MaxValueSize bounds values (empty values are allowed); 0 means 4 MiB.
	// At most 1 GiB.
	MaxValueSize int
	// NoSync skips fsync: acknowledged writes may be lost in a crash. For
	// tests and benchmarks only.
	NoSync bool
	// LogRetention is how many of the newest op-log entries are kept; 0
	// means 1<<20. Older entries are deleted a bounded number per commit.
	LogRetention uint64
	// Logger receives one line per notable event; nil discards them.
	Logger *slog.Logger
}

// state is what the committer publishes after each commit. It is never
// modified once published; epochs is replaced, not edited.
type state struct {
	lastSeq  uint64
	firstSeq uint64 // oldest kept log entry; lastSeq+1 when the log is empty
	epoch    uint64 // highest epoch seen
	logEpoch uint64 // epoch of the newest log entry
	epochs   []EpochStart
}

// Store is one open datastore file. Its methods are safe for concurrent use.
// The zero value is not usable: create a Store with Open, and stop its
// committer goroutine with Close.
type Store struct {
	db        *bolt.DB
	path      string
	slots     int
	maxKey    int
	maxValue  int
	retention uint64
	log       *slog.Logger

	st       atomic.Pointer[state]
	commits  atomic.Uint64
	isClosed atomic.Bool

	mu     sync.Mutex // guards queue and closed
	queue  []*request
	closed bool

	wake          chan struct{}
	stop          chan struct{}
	committerDone chan struct{}
	closeOnce     sync.Once
	closeErr      error
}

type lockedError struct{ path string }

func (e *lockedError) Error() string {
	return fmt.Sprintf("datastore: %s is locked by another process", e.path)
}

func (e *lockedError) Is(target error) bool { return target == ErrLocked }

// Open opens the store at path, creating the file and its parent directory
// if missing, and starts its committer. When another process holds the file,
// Open gives up after about a second with an error that wraps ErrLocked.
//
// Errors: ErrBadOptions, ErrSlotsMismatch, ErrLocked, ErrFormat, ErrCorrupt
// (meta records or a log that disagrees with them), and I/O or bbolt errors.
func Open(path string, opts Options) (*Store, error) {
	if err := checkOptions(&opts); err != nil {
		return nil, fmt.Errorf("datastore: open %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("datastore: open %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         lockTimeout,
		NoSync:          opts.NoSync,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: initialMmapSize,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, &lockedError{path: path}
	}
	if err != nil {
		return nil, fmt.Errorf("datastore: open %s: %w", path, err)
	}
	s := &Store{
		db:            db,
		path:          path,
		maxKey:        opts.MaxKeySize,
		maxValue:      opts.MaxValueSize,
		retention:     opts.LogRetention,
		log:           opts.Logger,
		wake:          make(chan struct{}, 1),
		stop:          make(chan struct{}),
		committerDone: make(chan struct{}),
	}
	st, err := s.load(opts.Slots)
	if err != nil {
		// The load error is what the operator needs; a close error on top
		// of it adds nothing.
		_ = db.Close()
		return nil, fmt.Errorf("datastore: open %s: %w", path, err)
	}
	s.st.Store(st)
	go s.runCommitter()
	s.log.Info("datastore opened", "path", path, "slots", s.slots, "last_seq", st.lastSeq,
		"first_log_seq", st.firstSeq, "epoch", st.epoch)
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
	if o.MaxKeySize == 0 {
		o.MaxKeySize = defaultMaxKeySize
	}
	if o.MaxValueSize == 0 {
		o.MaxValueSize = defaultMaxValueSize
	}
	if o.LogRetention == 0 {
		o.LogRetention = defaultRetention
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// load reads the meta records, creating them in a new file, and checks them
// against the log.
func (s *Store) load(slots int) (*state, error) {
	var st state
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			return nil
		}
		return s.readState(tx, slots, &st)
	})
	if err != nil || s.slots != 0 {
		return &st, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := s.create(tx, slots); err != nil {
			return err
		}
		return s.readState(tx, slots, &st)
	})
	return &st, err
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
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	for _, p := range []struct {
		name []byte
		v    uint64
	}{{metaVersion, formatVersion}, {metaSlots, uint64(slots)}, {metaEpoch, 0}, {metaLastSeq, 0}, {metaLogEpoch, 0}} {
		if err := meta.Put(p.name, encodeMetaU64(p.name, p.v)); err != nil {
			return err
		}
	}
	if err := meta.Put(metaEpochs, encodeEpochs(metaEpochs, nil)); err != nil {
		return err
	}
	_, err = tx.CreateBucket(bucketOplog)
	return err
}

func (s *Store) readState(tx *bolt.Tx, slots int, st *state) error {
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
		return fmt.Errorf("file has %d slots, options say %d: %w", stored, slots, ErrSlotsMismatch)
	}
	if stored == 0 || stored > maxSlots {
		return fmt.Errorf("meta record slots is %d: %w", stored, ErrCorrupt)
	}
	if st.epoch, err = metaU64(tx, metaEpoch); err != nil {
		return err
	}
	if st.lastSeq, err = metaU64(tx, metaLastSeq); err != nil {
		return err
	}
	if st.logEpoch, err = metaU64(tx, metaLogEpoch); err != nil {
		return err
	}
	if st.epochs, err = decodeEpochs(metaEpochs, tx.Bucket(bucketMeta).Get(metaEpochs)); err != nil {
		return err
	}
	oplog := tx.Bucket(bucketOplog)
	if oplog == nil {
		return fmt.Errorf("oplog bucket missing: %w", ErrCorrupt)
	}
	c := oplog.Cursor()
	first, _ := c.First()
	last, _ := c.Last()
	switch {
	case last == nil:
		st.firstSeq = st.lastSeq + 1
	case len(first) != seqSize || len(last) != seqSize:
		return fmt.Errorf("oplog key of %d bytes: %w", len(last), ErrCorrupt)
	default:
		st.firstSeq = seqOf(first)
		if seqOf(last) != st.lastSeq {
			return fmt.Errorf("meta last seq %d but log ends at seq %d: %w", st.lastSeq, seqOf(last), ErrCorrupt)
		}
	}
	s.slots = int(stored)
	return nil
}

// metaU64 reads and checks one numeric meta record.
func metaU64(tx *bolt.Tx, name []byte) (uint64, error) {
	return decodeMetaU64(name, tx.Bucket(bucketMeta).Get(name))
}

// Close stops the committer after the commit in progress, fails writes still
// queued with ErrClosed, waits for open reads and closes the file. It is
// idempotent: later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.isClosed.Store(true)
		close(s.stop)
		<-s.committerDone
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("datastore: close %s: %w", s.path, err)
		}
		s.log.Info("datastore closed", "path", s.path, "last_seq", s.LastSeq(), "err", s.closeErr)
	})
	return s.closeErr
}

// Slots returns the number of virtual slots, fixed when the file was created.
func (s *Store) Slots() int { return s.slots }

// MaxKeySize returns the largest key accepted, in bytes.
func (s *Store) MaxKeySize() int { return s.maxKey }

// MaxValueSize returns the largest value accepted, in bytes.
func (s *Store) MaxValueSize() int { return s.maxValue }

// LastSeq returns the sequence number of the newest committed log entry;
// 0 for a new store. It never goes down, also across reopen.
func (s *Store) LastSeq() uint64 { return s.st.Load().lastSeq }

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
