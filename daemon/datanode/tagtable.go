package datanode

import (
	"hash/maphash"
	"math/bits"
	"runtime"
	"time"

	"github.com/thunderyurts/thunderyurts/datastore"
)

// tagTable is the dedupe's store of tags: a map tag → seq of the newest
// entry added with that tag, and the entries in the order they were added,
// oldest first, to forget them in that order. A Go map and a queue took
// about 130 bytes a tag; here the entries sit in a ring of fixed-size
// values and the map is an open-addressing index of 8-byte places at most
// half full: 48 bytes a tag, 48 MiB for a full window of dedupeMax, and
// nothing for the collector to scan.
//
// Both are allocated at their full size at once, on Linux outside the Go
// heap (tableMemory). Memory fresh from the system is not resident until
// written, so a node without tagged writes still holds little of it.
// Growing by doubling rebuilt the whole index under the dedupe's lock: at
// 512 Ki tags that held every write of the node for 100-400 ms, on every
// replica at the same moment.
//
// A client numbers its writes one after another, so a tag's place in the
// index is chosen by its client and its number's high bits, and its
// number's low bits pick one of tagRun places in a row: the tags a primary
// adds, looks up and forgets one after the other share cache lines. With
// places chosen at random every write cost three cache misses in 40 MiB,
// a tenth of a primary's CPU.
//
// An entry whose tag was added again later, or removed, stays in the ring
// until it is the oldest, but is no longer indexed, and its tag in the ring
// is zeroed once the index knows it (so a rebuilt index is the same).
//
// Only a primary looks tags up. The table starts, and a follower keeps it,
// without the index: add and popOldest then write the ring alone, and the
// first lookup builds the index from it (a full window in about a tenth of
// a second). Keeping the index took a fifth of a follower's CPU under
// tagged writes. Not safe for concurrent use.
type tagTable struct {
	ring []tagged // the most entries kept; len a power of two
	head uint64   // position of the oldest entry; ring[pos&(len-1)]
	tail uint64   // position of the next entry
	// index holds the indexed entries (0: empty), at their home place or
	// the next free one after it (linear probing): ring slot+1 in the low
	// slotBits bits, the home place in the next homeBits, and check bits
	// of the tag's hash above. A probe reads the ring, a likely cache miss
	// in 32 MiB, only for an entry whose home and check bits match; moving
	// entries back over a removed one reads only the index.
	index              []uint64
	slotBits, homeBits uint
	// unindexed: the index is not kept; the next lookup builds it.
	unindexed bool
	seed      maphash.Seed
	// hash is the hash of a tag's client and its number's high bits
	// (place); tests replace it to make tags collide.
	hash func(seed maphash.Seed, tag datastore.Tag) uint64
}

// tagged is one entry of the ring and when it was added, on the dedupe's
// clock.
type tagged struct {
	tag datastore.Tag
	seq uint64
	at  time.Duration
}

// tagRun is how many places in a row the tags of one client's consecutive
// numbers take: 64 bytes, a cache line.
const tagRun = 8

// newTagTable returns a table of max entries; max must be a power of two
// of at most 2^20 (the index's places hold a slot and a home in 42 bits).
func newTagTable(max int) *tagTable {
	ring, index, release := tableMemory(max, 2*max)
	t := &tagTable{
		ring: ring, index: index, slotBits: uint(bits.Len(uint(max))), homeBits: uint(bits.Len(uint(2*max)) - 1),
		unindexed: true, seed: maphash.MakeSeed(), hash: hashTag,
	}
	if release != nil {
		// Every use of the table is under the dedupe's lock, through the
		// dedupe's current table: once unreachable, it is unused.
		runtime.AddCleanup(t, func(release func()) { release() }, release)
	}
	return t
}

func hashTag(seed maphash.Seed, tag datastore.Tag) uint64 { return maphash.Comparable(seed, tag) }

// len is the number of entries in the ring, indexed or not.
func (t *tagTable) len() int { return int(t.tail - t.head) }

// oldest returns the oldest entry; the table must not be empty.
func (t *tagTable) oldest() tagged { return t.ring[t.head&uint64(len(t.ring)-1)] }

// get returns the seq of tag's newest entry.
func (t *tagTable) get(tag datastore.Tag) (uint64, bool) {
	t.buildIndex()
	if i, ok := t.find(t.place(tag), tag); ok {
		return t.ring[t.slotAt(i)].seq, true
	}
	return 0, false
}

// add appends an entry, dropping the oldest entry first when max are kept,
// and indexes it if the index is kept.
func (t *tagTable) add(tag datastore.Tag, seq uint64, at time.Duration) {
	if t.len() == len(t.ring) {
		t.popOldest()
	}
	slot := uint32(t.tail & uint64(len(t.ring)-1))
	t.ring[slot] = tagged{tag: tag, seq: seq, at: at}
	t.tail++
	if !t.unindexed {
		t.index1(slot)
	}
}

// index1 indexes the entry at ring slot in place of an older entry of its
// tag, whose tag it zeroes.
func (t *tagTable) index1(slot uint32) {
	tag := t.ring[slot].tag
	v := t.place(tag)
	i, found := t.find(v, tag)
	if found {
		t.ring[t.slotAt(i)].tag = datastore.Tag{}
	} else {
		i = t.free(v)
	}
	t.index[i] = v | uint64(slot+1)
}

// dropIndex stops keeping the index until the next lookup.
func (t *tagTable) dropIndex() { t.unindexed = true }

// buildIndex builds the index from the ring, oldest entry first, if it is
// not kept.
func (t *tagTable) buildIndex() {
	if !t.unindexed {
		return
	}
	t.unindexed = false
	clear(t.index)
	mask := uint64(len(t.ring) - 1)
	for p := t.head; p < t.tail; p++ {
		if slot := uint32(p & mask); !t.ring[slot].tag.IsZero() {
			t.index1(slot)
		}
	}
}

// remove unindexes tag if its newest entry has seq.
func (t *tagTable) remove(tag datastore.Tag, seq uint64) {
	t.buildIndex()
	if i, ok := t.find(t.place(tag), tag); ok && t.ring[t.slotAt(i)].seq == seq {
		t.ring[t.slotAt(i)].tag = datastore.Tag{}
		t.unindex(i)
	}
}

// popOldest drops the oldest entry, and its tag from the index if the
// index is kept and that entry is the indexed one.
func (t *tagTable) popOldest() {
	slot := uint32(t.head & uint64(len(t.ring)-1))
	if tag := t.ring[slot].tag; !t.unindexed && !tag.IsZero() {
		if i, ok := t.find(t.place(tag), tag); ok && t.slotAt(i) == slot {
			t.unindex(i)
		}
	}
	t.ring[slot] = tagged{}
	t.head++
}

// indexed reports whether e, an entry of the ring, is the one its tag's
// lookups find (compared by seq, as the map it replaces did).
func (t *tagTable) indexed(e tagged) bool {
	if e.tag.IsZero() {
		return false
	}
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

// place is what tag's index place holds besides its slot: its home place
// and check bits. Tags of one client whose numbers differ only in their
// low bits have neighbouring homes.
func (t *tagTable) place(tag datastore.Tag) uint64 {
	h := t.hash(t.seed, datastore.Tag{Client: tag.Client, Seq: tag.Seq / tagRun})
	low := tag.Seq % tagRun
	home := (h*tagRun + low) & uint64(len(t.index)-1)
	// The check bits differ for every low: the top bits of low times an
	// odd constant do, for the eight values of low.
	check := (h ^ low*0x9e3779b97f4a7c15) >> (t.slotBits + t.homeBits)
	return check<<(t.slotBits+t.homeBits) | home<<t.slotBits
}

// homeOf is the home place of the entry v of the index.
func (t *tagTable) homeOf(v uint64) int { return int(v>>t.slotBits) & (len(t.index) - 1) }

// slotAt is the ring slot of the entry at index place i, which is not
// empty.
func (t *tagTable) slotAt(i int) uint32 { return uint32(t.index[i]&(1<<t.slotBits-1)) - 1 }

// find returns the index place of tag, whose place (home and check bits)
// is p.
func (t *tagTable) find(p uint64, tag datastore.Tag) (int, bool) {
	mask := len(t.index) - 1
	for i := t.homeOf(p); ; i = (i + 1) & mask {
		v := t.index[i]
		if v == 0 {
			return 0, false
		}
		if v&^(1<<t.slotBits-1) == p && t.ring[t.slotAt(i)].tag == tag {
			return i, true
		}
	}
}

// free returns the first empty index place from the home in p on; the
// index is never more than half full, so there is one.
func (t *tagTable) free(p uint64) int {
	mask := len(t.index) - 1
	i := t.homeOf(p)
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
		h := t.homeOf(t.index[j])
		// The entry at j stays if its home lies cyclically in (i, j].
		if (i < j && i < h && h <= j) || (i > j && (i < h || h <= j)) {
			continue
		}
		t.index[i] = t.index[j]
		i = j
	}
	t.index[i] = 0
}
