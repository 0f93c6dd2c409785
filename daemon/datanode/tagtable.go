package datanode

import (
	"hash/maphash"
	"time"

	"github.com/thunderyurts/thunderyurts/datastore"
)

// tagTable is the dedupe's store of tags: a map tag → seq of the newest
// entry added with that tag, and the entries in the order they were added,
// oldest first, to forget them in that order. A Go map and a queue took
// about 130 bytes a tag; here the entries sit in a ring of fixed-size
// values and the map is an open-addressing index of 4-byte ring positions
// at most half full: 40 bytes a tag, 40 MiB for a full window of
// dedupeMax, and nothing for the collector to scan.
//
// Both are allocated at their full size at once. Memory the allocator takes
// fresh from the system is not resident until written, so a node without
// tagged writes still holds little of it. Growing by doubling rebuilt the
// whole index under the dedupe's lock: at 512 Ki tags that held every write
// of the node for 100-400 ms, on every replica at the same moment.
//
// An entry whose tag was added again later, or removed, stays in the ring
// until it is the oldest, but is no longer indexed. Not safe for
// concurrent use.
type tagTable struct {
	ring []tagged // the most entries kept; len a power of two
	head uint64   // position of the oldest entry; ring[pos&(len-1)]
	tail uint64   // position of the next entry
	// index holds ring slot+1 of the indexed entries (0: empty), at the
	// place their tag hashes to or the next free one after it.
	index []uint32
	seed  maphash.Seed
	// hash is the tag's hash; tests replace it to make tags collide.
	hash func(seed maphash.Seed, tag datastore.Tag) uint64
}

// tagged is one entry of the ring and when it was added, on the dedupe's
// clock.
type tagged struct {
	tag datastore.Tag
	seq uint64
	at  time.Duration
}

// newTagTable returns a table of max entries; max must be a power of two.
func newTagTable(max int) *tagTable {
	return &tagTable{ring: make([]tagged, max), index: make([]uint32, 2*max), seed: maphash.MakeSeed(), hash: hashTag}
}

func hashTag(seed maphash.Seed, tag datastore.Tag) uint64 { return maphash.Comparable(seed, tag) }

// len is the number of entries in the ring, indexed or not.
func (t *tagTable) len() int { return int(t.tail - t.head) }

// oldest returns the oldest entry; the table must not be empty.
func (t *tagTable) oldest() tagged { return t.ring[t.head&uint64(len(t.ring)-1)] }

// get returns the seq of tag's newest entry.
func (t *tagTable) get(tag datastore.Tag) (uint64, bool) {
	if i, ok := t.find(tag); ok {
		return t.ring[t.index[i]-1].seq, true
	}
	return 0, false
}

// add appends an entry and indexes it, dropping the oldest entry first
// when max are kept.
func (t *tagTable) add(tag datastore.Tag, seq uint64, at time.Duration) {
	if t.len() == len(t.ring) {
		t.popOldest()
	}
	slot := uint32(t.tail & uint64(len(t.ring)-1))
	t.ring[slot] = tagged{tag: tag, seq: seq, at: at}
	t.tail++
	i, found := t.find(tag)
	if !found {
		i = t.free(tag)
	}
	t.index[i] = slot + 1
}

// remove unindexes tag if its newest entry has seq.
func (t *tagTable) remove(tag datastore.Tag, seq uint64) {
	if i, ok := t.find(tag); ok && t.ring[t.index[i]-1].seq == seq {
		t.unindex(i)
	}
}

// popOldest drops the oldest entry, and its tag from the index if that
// entry is the indexed one.
func (t *tagTable) popOldest() {
	slot := uint32(t.head & uint64(len(t.ring)-1))
	if i, ok := t.find(t.ring[slot].tag); ok && t.index[i] == slot+1 {
		t.unindex(i)
	}
	t.ring[slot] = tagged{}
	t.head++
}

// indexed reports whether e, an entry of the ring, is the one its tag's
// lookups find (compared by seq, as the map it replaces did).
func (t *tagTable) indexed(e tagged) bool {
	seq, ok := t.get(e.tag)
	return ok && seq == e.seq
}

// each calls fn for the ring's entries, oldest first.
func (t *tagTable) each(fn func(tagged)) {
	mask := uint64(len(t.ring) - 1)
	for p := t.head; p < t.tail; p++ {
		fn(t.ring[p&mask])
	}
}

// home is where tag's index probe starts.
func (t *tagTable) home(tag datastore.Tag) int {
	return int(t.hash(t.seed, tag) & uint64(len(t.index)-1))
}

// find returns the index place of tag.
func (t *tagTable) find(tag datastore.Tag) (int, bool) {
	mask := len(t.index) - 1
	for i := t.home(tag); ; i = (i + 1) & mask {
		v := t.index[i]
		if v == 0 {
			return 0, false
		}
		if t.ring[v-1].tag == tag {
			return i, true
		}
	}
}

// free returns the first empty index place from tag's home on; the index
// is never more than half full, so there is one.
func (t *tagTable) free(tag datastore.Tag) int {
	mask := len(t.index) - 1
	i := t.home(tag)
	for t.index[i] != 0 {
		i = (i + 1) & mask
	}
	return i
}

// unindex empties index place i and moves later entries of the same probe
// run back into the gap (linear probing without tombstones), so a lookup
// still meets every entry before an empty place.
func (t *tagTable) unindex(i int) {
	mask := len(t.index) - 1
	for j := (i + 1) & mask; t.index[j] != 0; j = (j + 1) & mask {
		h := t.home(t.ring[t.index[j]-1].tag)
		// The entry at j stays if its home lies cyclically in (i, j].
		if (i < j && i < h && h <= j) || (i > j && (i < h || h <= j)) {
			continue
		}
		t.index[i] = t.index[j]
		i = j
	}
	t.index[i] = 0
}
