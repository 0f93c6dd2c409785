package datastore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketMeta = []byte("meta")

// Meta records reuse the value record format with the meta key as the key.
func encodeMetaU64(name []byte, v uint64) []byte {
	var payload [8]byte
	binary.BigEndian.PutUint64(payload[:], v)
	rec := make([]byte, recordSize(len(payload)))
	encodeRecord(rec, name, payload[:])
	return rec
}

func decodeMetaU64(name, rec []byte) (uint64, error) {
	v, ok := openRecord(name, rec)
	if !ok || len(v) != 8 {
		return 0, fmt.Errorf("meta record %s: %w", name, ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// encodeEpochs stores the epoch map as consecutive (epoch, start seq) pairs.
func encodeEpochs(name []byte, epochs []EpochStart) []byte {
	payload := make([]byte, 16*len(epochs))
	for i, e := range epochs {
		binary.BigEndian.PutUint64(payload[16*i:], e.Epoch)
		binary.BigEndian.PutUint64(payload[16*i+8:], e.StartSeq)
	}
	rec := make([]byte, recordSize(len(payload)))
	encodeRecord(rec, name, payload)
	return rec
}

func decodeEpochs(name, rec []byte) ([]EpochStart, error) {
	v, ok := openRecord(name, rec)
	if !ok || len(v)%16 != 0 {
		return nil, fmt.Errorf("meta record %s: %w", name, ErrCorrupt)
	}
	epochs := make([]EpochStart, len(v)/16)
	for i := range epochs {
		epochs[i] = EpochStart{
			Epoch:    binary.BigEndian.Uint64(v[16*i:]),
			StartSeq: binary.BigEndian.Uint64(v[16*i+8:]),
		}
	}
	return epochs, nil
}

var (
	metaVersion   = []byte("version")
	metaSlots     = []byte("slots")
	metaEpoch     = []byte("epoch")
	metaApplied   = []byte("applied")
	metaEpochs    = []byte("epochs")
	metaRestoring = []byte("restoring")
	// metaApplying is present while an apply round commits in parts: the
	// round's last seq, whose entries the file may hold some of past
	// metaApplied (applyPart).
	metaApplying = []byte("applying")
)

// loadMeta reads the meta records, creating them in a new store, computes
// the slot stats of a store that has none, and finishes a restore that a
// crash interrupted by discarding its data and log: the flag is cleared
// only after the log files are gone, so a crash in between repeats the
// discard rather than replaying the old log.
func (s *Store) loadMeta(slots int) error {
	discard := false
	start := time.Now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			if err := s.create(tx, slots); err != nil {
				return err
			}
		}
		if err := s.readMeta(tx, slots); err != nil {
			return err
		}
		if s.applyingTo == 0 && tx.Bucket(bucketMeta).Get(metaApplying) != nil {
			// A build that does not know the record left it behind a
			// round it completed; readers of the file would wait on it.
			if err := tx.Bucket(bucketMeta).Delete(metaApplying); err != nil {
				return err
			}
		}
		if computed, err := ensureStats(tx); err != nil {
			return fmt.Errorf("compute slot stats: %w", err)
		} else if computed {
			s.log.Info("datastore computed the stats of every slot", "dir", s.dir, "took", time.Since(start))
		}
		if tx.Bucket(bucketMeta).Get(metaRestoring) == nil {
			return nil
		}
		discard = true
		s.applied, s.applyingTo = 0, 0
		if err := wipeSlots(tx); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Delete(metaApplying); err != nil {
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
	for _, name := range [][]byte{bucketMeta, bucketStats} {
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
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
	switch version {
	case formatVersion:
	case formatVersionV1Log, formatVersionNoStats, formatVersionV4, formatVersionV5:
		// The log's v1 records and short commit records stay readable;
		// what is written from now on is v2 with longer commit records,
		// which older builds must not try to read, a version 3 store
		// gets its stats (ensureStats), which older builds would not keep
		// up to date, and rounds commit in parts, which older builds do
		// not know to replay in full.
		if err := putMeta(tx, metaVersion, formatVersion); err != nil {
			return err
		}
	default:
		return fmt.Errorf("format version %d, this build reads %d to %d: %w", version, formatVersionV1Log, formatVersion, ErrFormat)
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
	if s.applyingTo, err = applyingTo(tx); err != nil {
		return err
	}
	if s.applyingTo <= s.applied {
		s.applyingTo = 0 // nothing past the applied seq: loadMeta removes the record
	}
	if s.epochs, err = decodeEpochs(metaEpochs, tx.Bucket(bucketMeta).Get(metaEpochs)); err != nil {
		return err
	}
	if s.restoredTags, err = readRestoredTags(tx); err != nil {
		return err
	}
	s.slots = int(stored)
	return nil
}

// applyingTo returns the last seq of the apply round the file holds part
// of, 0 if none.
func applyingTo(tx *bolt.Tx) (uint64, error) {
	if tx.Bucket(bucketMeta).Get(metaApplying) == nil {
		return 0, nil
	}
	return metaU64(tx, metaApplying)
}

// metaU64 reads and checks one numeric meta record.
func metaU64(tx *bolt.Tx, name []byte) (uint64, error) {
	return decodeMetaU64(name, tx.Bucket(bucketMeta).Get(name))
}

// wipeSlots deletes every slot bucket, their stats and the marks.
func wipeSlots(tx *bolt.Tx) error {
	var names [][]byte
	c := tx.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if _, ok := slotOfBucketName(k); ok && v == nil || bytes.Equal(k, bucketStats) || bytes.Equal(k, bucketMarks) {
			names = append(names, k)
		}
	}
	for _, name := range names {
		if err := tx.DeleteBucket(name); err != nil {
			return fmt.Errorf("delete bucket %q: %w", name, err)
		}
	}
	_, err := tx.CreateBucket(bucketStats)
	return err
}
