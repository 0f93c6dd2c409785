package datastore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// openDataFile opens the bbolt file. bbolt panics on some damaged pages
// (it trusts page headers); a panic and bbolt's own complaints about the
// file become one ErrCorrupt error naming it.
func openDataFile(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	err = guardBolt(path, func() error {
		db, err = bolt.Open(path, 0o600, opts)
		return err
	})
	if err != nil {
		for _, damage := range []error{bolterrors.ErrInvalid, bolterrors.ErrChecksum, bolterrors.ErrVersionMismatch} {
			if errors.Is(err, damage) && !errors.Is(err, ErrCorrupt) {
				return nil, fmt.Errorf("data file %s is damaged: %w: %w", path, err, ErrCorrupt)
			}
		}
		return nil, err
	}
	return db, nil
}

// guardBolt runs fn, turning a bbolt panic (a damaged page) into an
// ErrCorrupt error naming the file. bbolt rolls the transaction back as the
// panic unwinds.
func guardBolt(path string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("data file %s is damaged (bbolt: %v): %w", path, r, ErrCorrupt)
		}
	}()
	return fn()
}

// Verify checks the store in dir without changing it: the bbolt file's
// page structure (bbolt's consistency check), its meta records and the
// checksum of every stored value, and every write-ahead-log record with its
// commit. It reads everything, so it takes time in proportion to the
// store's size; Open does not do this (it reads only the log above the
// applied seq and the meta records). The store must not be open: Verify
// takes the directory lock (ErrLocked). A torn final commit, which Open
// would drop with a warning, is not an error. Errors: ErrLocked, ErrCorrupt
// (naming the file, and the offset, slot or key), ErrFormat, I/O errors.
func Verify(dir string) error {
	s := &Store{dir: dir, walDir: filepath.Join(dir, walDir)}
	defer func() { _ = s.release() }()
	if err := s.acquireLock(); err != nil {
		return fmt.Errorf("datastore: verify %s: %w", dir, err)
	}
	if err := verifyDataFile(filepath.Join(dir, dataFile)); err != nil {
		return fmt.Errorf("datastore: verify %s: %w", dir, err)
	}
	if err := verifyLog(s.walDir); err != nil {
		return fmt.Errorf("datastore: verify %s: %w", dir, err)
	}
	return nil
}

func verifyDataFile(path string) error {
	db, err := openDataFile(path, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	return guardBolt(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			var errs []error
			for err := range tx.Check() {
				if len(errs) < 5 {
					errs = append(errs, err)
				}
			}
			if len(errs) > 0 {
				return fmt.Errorf("data file %s is damaged: %w: %w", path, errors.Join(errs...), ErrCorrupt)
			}
			meta := tx.Bucket(bucketMeta)
			if meta == nil {
				return fmt.Errorf("data file %s has no meta bucket: %w", path, ErrFormat)
			}
			for _, name := range [][]byte{metaVersion, metaSlots, metaEpoch, metaApplied} {
				if _, err := metaU64(tx, name); err != nil {
					return fmt.Errorf("data file %s: %w", path, err)
				}
			}
			if _, err := decodeEpochs(metaEpochs, meta.Get(metaEpochs)); err != nil {
				return fmt.Errorf("data file %s: %w", path, err)
			}
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				slot, ok := slotOfBucketName(name)
				if !ok {
					return nil
				}
				return b.ForEach(func(k, v []byte) error {
					if _, ok := openRecord(k, v); !ok {
						return fmt.Errorf("data file %s: %w", path, corruptRecord(slot, k, "checksum mismatch"))
					}
					return nil
				})
			})
		})
	})
}

// verifyLog reads every record of every segment as Open would.
func verifyLog(walDir string) error {
	segs, err := listSegments(walDir)
	if err != nil {
		return err
	}
	for i, seg := range segs {
		if err := verifySegment(seg.path, i == len(segs)-1); err != nil {
			return err
		}
	}
	return nil
}

func verifySegment(path string, newest bool) error {
	sr, err := openSegment(path, -1)
	if err != nil {
		return err
	}
	defer sr.close()
	for {
		_, err := sr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			_, torn, err := sr.finalTorn(err, newest)
			if torn {
				return nil
			}
			return err
		}
	}
}

// SetAside moves the store files of the store in dir (the write-ahead-log
// directory with its spare segments, and the bbolt file) into a new directory
// dir/damaged-<UTC time>, so that Open then starts an empty store and the
// node can rebuild it from its replica group. It deletes nothing, leaves
// other files (the node's identity, LOCK) in place, makes the moves
// durable, and returns the new directory. The store must not be open:
// SetAside takes the directory lock (ErrLocked). Files that do not exist
// are skipped; a directory with none of them is left alone and "" is
// returned.
func SetAside(dir string) (string, error) {
	s := &Store{dir: dir}
	defer func() { _ = s.release() }()
	if err := s.acquireLock(); err != nil {
		return "", fmt.Errorf("datastore: set aside %s: %w", dir, err)
	}
	var present []string
	for _, name := range []string{walDir, dataFile} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			present = append(present, name)
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("datastore: set aside %s: %w", dir, err)
		}
	}
	if len(present) == 0 {
		return "", nil
	}
	dest := filepath.Join(dir, "damaged-"+time.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := os.Mkdir(dest, 0o755); err != nil {
		return "", fmt.Errorf("datastore: set aside %s: %w", dir, err)
	}
	for _, name := range present {
		if err := os.Rename(filepath.Join(dir, name), filepath.Join(dest, name)); err != nil {
			return "", fmt.Errorf("datastore: set aside %s: move %s to %s: %w", dir, name, dest, err)
		}
	}
	if err := syncDir(dest); err != nil {
		return "", fmt.Errorf("datastore: set aside %s: %w", dir, err)
	}
	if err := syncDir(dir); err != nil {
		return "", fmt.Errorf("datastore: set aside %s: %w", dir, err)
	}
	return dest, nil
}
