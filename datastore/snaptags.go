package datastore

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// TagSeq is a tagged entry by its log position: the entry at Seq carried
// Tag.
type TagSeq struct {
	Tag Tag
	Seq uint64
}

// MaxRestoredTags bounds the tags a restore keeps (24 bytes each on disk
// and in memory): the newest ones by seq.
const MaxRestoredTags = 1 << 20

// metaRestoredTags holds the tags of the snapshot the store was restored
// from: (client, client seq, seq) triples, ascending by seq. It is written
// with the restore's end and deleted with its start, in the same bbolt
// transactions as the applied seq and the restoring flag, so it always
// describes the snapshot the data came from.
var metaRestoredTags = []byte("restoredtags")

// SetTags gives the tagged entries the snapshot covers (for a node's retry
// detection: their entries are not in the restored log). Finish keeps those
// at or below its seq, at most MaxRestoredTags of the newest, and persists
// them with the restore; RestoredTags and HasRestoredTag return them until
// the next restore. tags is not modified.
func (r *Restorer) SetTags(tags []TagSeq) {
	r.tags = slices.Clone(tags)
}

// RestoredTags returns the tags of the snapshot the store was restored
// from (SetTags), ascending by seq; nil if it was never restored, or
// restored without tags. The caller must not modify the slice.
func (s *Store) RestoredTags() []TagSeq {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.restoredTags
}

// HasRestoredTag reports whether the snapshot the store was restored from
// covered the entry at seq, and it carried tag.
func (s *Store) HasRestoredTag(tag Tag, seq uint64) bool {
	tags := s.RestoredTags()
	i, found := slices.BinarySearchFunc(tags, seq, func(t TagSeq, seq uint64) int { return cmp.Compare(t.Seq, seq) })
	return found && tags[i].Tag == tag
}

// restoredTagsFor is tags as Finish keeps them for a snapshot at seq.
func restoredTagsFor(tags []TagSeq, seq uint64) []TagSeq {
	tags = slices.DeleteFunc(tags, func(t TagSeq) bool { return t.Seq > seq || t.Tag.IsZero() })
	slices.SortFunc(tags, func(a, b TagSeq) int { return cmp.Compare(a.Seq, b.Seq) })
	tags = slices.CompactFunc(tags, func(a, b TagSeq) bool { return a.Seq == b.Seq })
	if len(tags) > MaxRestoredTags {
		tags = tags[len(tags)-MaxRestoredTags:]
	}
	if len(tags) == 0 {
		return nil
	}
	return tags
}

// putRestoredTags persists tags (none: deletes the record).
func putRestoredTags(tx *bolt.Tx, tags []TagSeq) error {
	meta := tx.Bucket(bucketMeta)
	if len(tags) == 0 {
		return meta.Delete(metaRestoredTags)
	}
	payload := make([]byte, 24*len(tags))
	for i, t := range tags {
		binary.BigEndian.PutUint64(payload[24*i:], t.Tag.Client)
		binary.BigEndian.PutUint64(payload[24*i+8:], t.Tag.Seq)
		binary.BigEndian.PutUint64(payload[24*i+16:], t.Seq)
	}
	rec := make([]byte, recordSize(len(payload)))
	encodeRecord(rec, metaRestoredTags, payload)
	if err := meta.Put(metaRestoredTags, rec); err != nil {
		return fmt.Errorf("meta %s: %w", metaRestoredTags, err)
	}
	return nil
}

// readRestoredTags loads the record putRestoredTags wrote, if any.
func readRestoredTags(tx *bolt.Tx) ([]TagSeq, error) {
	rec := tx.Bucket(bucketMeta).Get(metaRestoredTags)
	if rec == nil {
		return nil, nil
	}
	v, ok := openRecord(metaRestoredTags, rec)
	if !ok || len(v)%24 != 0 {
		return nil, fmt.Errorf("meta record %s: %w", metaRestoredTags, ErrCorrupt)
	}
	tags := make([]TagSeq, len(v)/24)
	for i := range tags {
		tags[i] = TagSeq{
			Tag: Tag{Client: binary.BigEndian.Uint64(v[24*i:]), Seq: binary.BigEndian.Uint64(v[24*i+8:])},
			Seq: binary.BigEndian.Uint64(v[24*i+16:]),
		}
	}
	return tags, nil
}

// MaxLogTags bounds the tags Open keeps from its log scan for TakeLogTags:
// the newest ones, as many as a node's retry window holds.
const MaxLogTags = 1 << 20

// TakeLogTags returns the tags of the log entries Open's scan of the log
// met, ascending by seq (the newest MaxLogTags at most), and forgets them:
// a node rebuilds its retry table from them without reading the log a
// second time. Later calls return nil until the next Open; entries written
// since Open are not included.
func (s *Store) TakeLogTags() []TagSeq {
	s.mu.Lock()
	defer s.mu.Unlock()
	tags := s.logTags.ordered()
	s.logTags = tagRing{max: s.logTags.max}
	return tags
}

// tagRing keeps the newest max tags it is given, growing as needed (a log
// without tags costs nothing).
type tagRing struct {
	max  int
	tags []TagSeq
	next int // where the next tag goes once tags is full
}

func (r *tagRing) add(t TagSeq) {
	if len(r.tags) < r.max {
		r.tags = append(r.tags, t)
		return
	}
	r.tags[r.next] = t
	r.next = (r.next + 1) % r.max
}

func (r *tagRing) len() int { return len(r.tags) }

// ordered returns the tags oldest first, rotated in place.
func (r *tagRing) ordered() []TagSeq {
	if len(r.tags) == 0 {
		return nil
	}
	slices.Reverse(r.tags[:r.next])
	slices.Reverse(r.tags[r.next:])
	slices.Reverse(r.tags)
	return r.tags
}
