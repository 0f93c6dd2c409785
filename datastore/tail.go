package datastore

// tailLog holds the newest log entries in seq order in fixed-size chunks.
// Appending never moves what is there, and the chunks of dropped entries
// are reused, so the tail's memory is allocated once and not copied again:
// a plain slice trimmed at its front reallocated, copied and page-faulted
// its whole array over and over (about a tenth of a secondary's CPU).
type tailLog struct {
	tailView
	spare []*tailChunk // emptied chunks kept for reuse
}

// tailChunkLen entries make one chunk (about 350 KiB).
const tailChunkLen = 4096

// maxSpareChunks bounds the emptied chunks kept; more go to the collector.
const maxSpareChunks = 8

type tailChunk [tailChunkLen]entry

// tailView is a run of consecutive entries. The applier reads one without
// holding the store's lock: its chunks stay in place until the applier
// itself drops them (trimming happens after its transaction, truncation and
// restore wait for applyMu), and appends never move entries.
type tailView struct {
	chunks []*tailChunk // chunks[0][off] is the first entry
	off    int
	n      int
}

func (v *tailView) len() int { return v.n }

// at returns the i'th entry, 0 <= i < len().
func (v *tailView) at(i int) *entry {
	i += v.off
	return &v.chunks[i/tailChunkLen][i%tailChunkLen]
}

// firstSeq is the seq of the first entry; the tail must not be empty.
func (t *tailLog) firstSeq() uint64 { return t.chunks[0][t.off].seq }

// bySeq returns the entry with the given seq, or nil when the tail does not
// hold it.
func (t *tailLog) bySeq(seq uint64) *entry {
	if t.n == 0 || seq < t.firstSeq() || seq-t.firstSeq() >= uint64(t.n) {
		return nil
	}
	return t.at(int(seq - t.firstSeq()))
}

func (t *tailLog) push(e entry) {
	i := t.off + t.n
	if i == len(t.chunks)*tailChunkLen {
		t.chunks = append(t.chunks, t.newChunk())
	}
	t.chunks[i/tailChunkLen][i%tailChunkLen] = e
	t.n++
}

func (t *tailLog) newChunk() *tailChunk {
	if n := len(t.spare); n > 0 {
		c := t.spare[n-1]
		t.spare = t.spare[:n-1]
		return c
	}
	return new(tailChunk)
}

// release clears a chunk's entries (their keys and values may go) and
// keeps it for reuse.
func (t *tailLog) release(c *tailChunk) {
	clear(c[:])
	if len(t.spare) < maxSpareChunks {
		t.spare = append(t.spare, c)
	}
}

// dropFront drops the k oldest entries.
func (t *tailLog) dropFront(k int) {
	for k > 0 {
		c := t.chunks[0]
		m := min(k, tailChunkLen-t.off, t.n)
		clear(c[t.off : t.off+m])
		t.off += m
		t.n -= m
		k -= m
		if t.off == tailChunkLen || t.n == 0 {
			t.chunks[0] = nil
			t.chunks = t.chunks[1:]
			t.release(c)
			t.off = 0
		}
	}
}

// dropBack drops the k newest entries.
func (t *tailLog) dropBack(k int) {
	for ; k > 0; k-- {
		t.n--
		i := t.off + t.n
		c := t.chunks[i/tailChunkLen]
		c[i%tailChunkLen] = entry{}
		if i%tailChunkLen == 0 {
			t.chunks = t.chunks[:len(t.chunks)-1]
			t.release(c)
			if t.n == 0 {
				t.off = 0
			}
		}
	}
}

// reset drops every entry.
func (t *tailLog) reset() { *t = tailLog{} }

// view returns entries i to j-1 as a view of their own: later appends and
// drops elsewhere in the tail do not change it.
func (t *tailLog) view(i, j int) tailView {
	first, last := (t.off+i)/tailChunkLen, (t.off+j-1)/tailChunkLen
	return tailView{chunks: append([]*tailChunk(nil), t.chunks[first:last+1]...), off: (t.off + i) % tailChunkLen, n: j - i}
}
