package datanode

import (
	"hash/maphash"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/thunderyurts/thunderyurts/datastore"
)

// The ring's entries are 32 bytes: 48 bytes a tag with the index, which
// is what dedupeMax's bound on the table's memory counts.
func TestTaggedIs32Bytes(t *testing.T) {
	if n := unsafe.Sizeof(tagged{}); n != 32 {
		t.Fatalf("tagged is %d bytes", n)
	}
}

// tagModel is what tagTable replaces: a map and a queue.
type tagModel struct {
	max   int
	seqs  map[datastore.Tag]uint64
	order []tagged
}

func (m *tagModel) add(tag datastore.Tag, seq uint64, at time.Duration) {
	if len(m.order) == m.max {
		m.popOldest()
	}
	m.seqs[tag] = seq
	m.order = append(m.order, tagged{tag: tag, seq: seq, at: at})
}

func (m *tagModel) remove(tag datastore.Tag, seq uint64) {
	if s, ok := m.seqs[tag]; ok && s == seq {
		delete(m.seqs, tag)
	}
}

func (m *tagModel) popOldest() {
	m.remove(m.order[0].tag, m.order[0].seq)
	m.order = m.order[1:]
}

// checkTable compares every lookup and the ring's order with the model.
func checkTable(t *testing.T, step int, tt *tagTable, m *tagModel, universe []datastore.Tag) {
	t.Helper()
	for _, tag := range universe {
		got, ok := tt.get(tag)
		want, wok := m.seqs[tag]
		if ok != wok || got != want {
			t.Fatalf("step %d: get %v = %d, %v; the model says %d, %v", step, tag, got, ok, want, wok)
		}
	}
	if tt.len() != len(m.order) {
		t.Fatalf("step %d: %d entries, the model %d", step, tt.len(), len(m.order))
	}
	i := 0
	tt.each(func(e tagged) {
		// The ring keeps the tag of an entry the index finds; others may
		// have theirs zeroed.
		o := m.order[i]
		want := m.seqs[o.tag] == o.seq
		if e.seq != o.seq || e.at != o.at || e.tag != o.tag && (want || !e.tag.IsZero()) || tt.indexed(e) != want {
			t.Fatalf("step %d: entry %d is %+v, the model's %+v", step, i, e, o)
		}
		i++
	})
}

// Random adds, removes and prunes over a small set of tags (so tags come
// back) leave the table answering as a map and a queue would, before and
// once it is full, also when its index is dropped (as on a follower) and
// rebuilt by a later lookup.
func TestTagTableMatchesAMapAndAQueue(t *testing.T) {
	for _, max := range []int{64, 4096} {
		rng := rand.New(rand.NewPCG(1, uint64(max)))
		universe := make([]datastore.Tag, max)
		for i := range universe {
			universe[i] = datastore.Tag{Client: rng.Uint64N(8) + 1, Seq: rng.Uint64()}
		}
		tt := newTagTable(max)
		m := &tagModel{max: max, seqs: map[datastore.Tag]uint64{}}
		var seq uint64
		for step := range 40 * max {
			switch r := rng.IntN(10); {
			case r < 7:
				seq++
				tag := universe[rng.IntN(len(universe))]
				tt.add(tag, seq, time.Duration(seq))
				m.add(tag, seq, time.Duration(seq))
			case r < 9 && rng.IntN(100) == 0:
				tt.dropIndex()
			case r < 9:
				tag := universe[rng.IntN(len(universe))]
				s := m.seqs[tag]
				if rng.IntN(4) == 0 {
					s++ // a stale seq removes nothing
				}
				tt.remove(tag, s)
				m.remove(tag, s)
			case len(m.order) > 0:
				if o := tt.oldest(); o.seq != m.order[0].seq || o.at != m.order[0].at {
					t.Fatalf("step %d: oldest %+v, the model's %+v", step, tt.oldest(), m.order[0])
				}
				tt.popOldest()
				m.popOldest()
			}
			if step%(max/4) == 0 {
				checkTable(t, step, tt, m, universe)
			}
		}
		checkTable(t, -1, tt, m, universe)
	}
}

// Tags whose hashes collide, all or in a few groups, are all found, and
// removing one from the middle of a probe run leaves the others findable.
func TestTagTableCollisions(t *testing.T) {
	for name, hash := range map[string]func(maphash.Seed, datastore.Tag) uint64{
		"all":    func(maphash.Seed, datastore.Tag) uint64 { return 7 },
		"groups": func(_ maphash.Seed, tag datastore.Tag) uint64 { return tag.Seq % 3 * 5 },
		"last":   func(maphash.Seed, datastore.Tag) uint64 { return 1<<64 - 1 }, // runs wrap around the index
	} {
		t.Run(name, func(t *testing.T) {
			tt := newTagTable(256)
			tt.hash = hash
			m := &tagModel{max: 256, seqs: map[datastore.Tag]uint64{}}
			var universe []datastore.Tag
			for i := range uint64(200) {
				tag := datastore.Tag{Client: 1, Seq: i}
				universe = append(universe, tag)
				tt.add(tag, i+1, 0)
				m.add(tag, i+1, 0)
			}
			checkTable(t, 0, tt, m, universe)
			for i := uint64(0); i < 200; i += 3 {
				tt.remove(universe[i], i+1)
				m.remove(universe[i], i+1)
			}
			checkTable(t, 1, tt, m, universe)
			for i := uint64(200); i < 400; i++ { // evicts the oldest
				tag := datastore.Tag{Client: 2, Seq: i}
				universe = append(universe, tag)
				tt.add(tag, i+1, 0)
				m.add(tag, i+1, 0)
			}
			checkTable(t, 2, tt, m, universe)
		})
	}
}

// The table is never reallocated, before or once it is full: a table
// that grew rebuilt its whole index under the dedupe's lock, stalling every
// write of the node.
func TestTagTableNeverGrows(t *testing.T) {
	const max = 1 << 12
	tt := newTagTable(max)
	ring, index := &tt.ring[0], &tt.index[0]
	for seq := range uint64(3 * max) {
		tt.add(datastore.Tag{Client: 1, Seq: seq + 1}, seq+1, 0)
		if &tt.ring[0] != ring || &tt.index[0] != index {
			t.Fatalf("the table was reallocated at its %d-th entry", seq+1)
		}
	}
	if tt.len() != max {
		t.Fatalf("table holds %d entries, want %d", tt.len(), max)
	}
}

// BenchmarkTagTableFull is a primary's work per tagged write once the
// window is full: a lookup that misses (claim), then an add that evicts the
// oldest entry. A client numbers its writes one after another (a
// client.Client's goroutines share its numbers): with one group a node
// sees them all, from one client or from 64; with eight groups, about
// every eighth.
func BenchmarkTagTableFull(b *testing.B) {
	for _, c := range []struct {
		name            string
		clients, stride uint64
	}{{"clients=1", 1, 1}, {"clients=64", 64, 1}, {"clients=1/groups=8", 1, 8}} {
		b.Run(c.name, func(b *testing.B) {
			tt := newTagTable(dedupeMax)
			seq := uint64(0)
			tag := func() datastore.Tag {
				return datastore.Tag{Client: seq%c.clients + 1, Seq: (seq/c.clients + 1) * c.stride}
			}
			for range dedupeMax {
				seq++
				tt.add(tag(), seq, 0)
			}
			b.ResetTimer()
			for range b.N {
				seq++
				if _, ok := tt.get(tag()); ok {
					b.Fatal("found a tag never added")
				}
				tt.add(tag(), seq, 0)
			}
		})
	}
}

// BenchmarkTagTableFollower is a follower's work per tagged entry once the
// window is full: an add to the ring alone.
func BenchmarkTagTableFollower(b *testing.B) {
	tt := newTagTable(dedupeMax)
	seq := uint64(0)
	for range dedupeMax {
		seq++
		tt.add(datastore.Tag{Client: seq%64 + 1, Seq: seq}, seq, 0)
	}
	b.ResetTimer()
	for range b.N {
		seq++
		tt.add(datastore.Tag{Client: seq%64 + 1, Seq: seq}, seq, 0)
	}
}

// BenchmarkTagTableBuildIndex is the first lookup of a new primary whose
// table holds a full window.
func BenchmarkTagTableBuildIndex(b *testing.B) {
	tt := newTagTable(dedupeMax)
	for seq := range uint64(dedupeMax) {
		tt.add(datastore.Tag{Client: seq%64 + 1, Seq: seq + 1}, seq+1, 0)
	}
	b.ResetTimer()
	for range b.N {
		tt.dropIndex()
		tt.buildIndex()
	}
}
