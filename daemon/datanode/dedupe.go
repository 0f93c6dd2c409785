package datanode

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/thunderyurts/thunderyurts/datastore"
)

// The retry window of idempotent writes (docs/replication.md, "Idempotent
// writes"): the table keeps a tag for dedupeWindow after its entry was
// appended, and the newest dedupeMin tags whatever their age, but never
// more than dedupeMax tags (48 bytes each in the tag table: 48 MiB at
// most, which only more than 8,700 tagged writes a second for two minutes
// reach).
const (
	dedupeWindow = 2 * time.Minute
	dedupeMin    = 64 << 10
	dedupeMax    = 1 << 20
)

// dedupe is a node's table of the tagged writes in its log: (client id,
// client seq) → log seq. It is fed from every entry the node appends, its
// own writes and those it replicates, and rebuilt from the log's tail when
// a store is opened. A primary answers a tagged write found here with the
// outcome of the entry it names, and joins one whose first attempt is
// still on its way to the log (inflight), so a retry is never appended
// twice. A hit is checked against the log before it is believed, so
// entries a truncation removed, or a snapshot replaced, are simply not
// found.
type dedupe struct {
	// mu guards the table; rebuild holds it until its fill is done.
	mu   sync.Mutex
	tags *tagTable // in log order
	// pending holds the claimed tags not yet written; the inflight is made
	// when a second attempt comes (nil until then: no allocation per write).
	pending map[datastore.Tag]*inflight
	born    time.Time // the table's clock starts here (monotonic)
}

// inflight is a tagged write queued on this node and not yet in its log;
// writes with the same tag wait for its outcome.
type inflight struct {
	done    bool
	seq     uint64
	err     error
	waiters []func(seq uint64, err error)
}

func newDedupe() *dedupe {
	return &dedupe{tags: newTagTable(dedupeMax), pending: map[datastore.Tag]*inflight{}, born: time.Now()}
}

// claim looks tag up. A tag in the log returns its entry's seq (inLog
// confirms it); one in flight returns that write, to join; otherwise the
// tag is claimed as in flight, and the caller must report the outcome of
// its write through written.
func (d *dedupe) claim(tag datastore.Tag, inLog func(datastore.Tag, uint64) bool) (seq uint64, first *inflight) {
	for {
		d.mu.Lock()
		if f, ok := d.pending[tag]; ok {
			if f == nil {
				f = &inflight{}
				d.pending[tag] = f
			}
			d.mu.Unlock()
			return 0, f
		}
		seq, ok := d.tags.get(tag)
		if !ok {
			d.pending[tag] = nil
			d.mu.Unlock()
			return 0, nil
		}
		d.mu.Unlock()
		// The log read is outside the lock: it may touch the disk.
		if inLog(tag, seq) {
			return seq, nil
		}
		d.mu.Lock()
		d.tags.remove(tag, seq)
		d.mu.Unlock()
	}
}

// follow stops keeping the table's index, as a follower looks no tag up;
// the first lookup once the node leads builds it again.
func (d *dedupe) follow() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tags.dropIndex()
}

// join calls then with the outcome of the write f once it is known: the
// seq of its entry, or why it was not written.
func (d *dedupe) join(f *inflight, then func(seq uint64, err error)) {
	d.mu.Lock()
	if !f.done {
		f.waiters = append(f.waiters, then)
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	then(f.seq, f.err)
}

// written reports the outcome of one write call of muts, whose tags were
// claimed: their entries end at seq last, or err says why they were not
// written.
func (d *dedupe) written(muts []datastore.Mutation, last uint64, err error) {
	tagged := false
	for i := range muts {
		tagged = tagged || !muts[i].Tag.IsZero()
	}
	if !tagged {
		return // the common case of old clients: no lock to take
	}
	var wake []*inflight
	now := time.Since(d.born)
	d.mu.Lock()
	for i := range muts {
		tag := muts[i].Tag
		f, claimed := d.pending[tag]
		if tag.IsZero() || !claimed {
			continue
		}
		delete(d.pending, tag)
		var seq uint64
		if err == nil {
			seq = last - uint64(len(muts)-1-i)
			d.addLocked(tag, seq, now)
		}
		if f != nil {
			f.done, f.seq, f.err = true, seq, err
			wake = append(wake, f)
		}
	}
	d.pruneLocked(now)
	d.mu.Unlock()
	for _, f := range wake {
		for _, then := range f.waiters {
			then(f.seq, f.err)
		}
	}
}

// tagsOf is the tags of muts.
func tagsOf(muts []datastore.Mutation) []datastore.Tag {
	out := make([]datastore.Tag, len(muts))
	for i := range muts {
		out[i] = muts[i].Tag
	}
	return out
}

// appended adds the tags of entries this node appended to its log: tags[i]
// is that of the entry at seq first+i (zero: untagged).
func (d *dedupe) appended(first uint64, tags []datastore.Tag) {
	now := time.Since(d.born)
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, tag := range tags {
		if !tag.IsZero() {
			d.addLocked(tag, first+uint64(i), now)
		}
	}
	d.pruneLocked(now)
}

func (d *dedupe) addLocked(tag datastore.Tag, seq uint64, now time.Duration) {
	d.tags.add(tag, seq, now)
}

// pruneLocked forgets the tags beyond the window (the table itself never
// holds more than dedupeMax).
func (d *dedupe) pruneLocked(now time.Duration) {
	for d.tags.len() > dedupeMin && now-d.tags.oldest().at >= dedupeWindow {
		d.tags.popOldest()
	}
}

// rebuild empties the table for store, just opened, and returns fill,
// which puts in the tags of its newest dedupeMax entries: those of the
// snapshot it was restored from, then those Open met in its log. The table
// stays locked from rebuild until fill returns, so a tagged write or a
// replicated append waits for it: a retry of a write in the log is still
// found, and the table stays in log order. fill takes a while for a full
// window, so a node runs it once it serves; it must run exactly once.
// Writes in flight stay claimed: their outcome comes from the store they
// were queued in.
func (d *dedupe) rebuild(store *datastore.Store, log *slog.Logger) (fill func()) {
	d.mu.Lock()
	d.tags = newTagTable(dedupeMax)
	last := store.LastSeq()
	from := uint64(1)
	if last >= dedupeMax {
		from = last - dedupeMax + 1
	}
	restored := since(store.RestoredTags(), from)
	logged := since(store.TakeLogTags(), max(from, store.FirstLogSeq()))
	return func() {
		defer d.mu.Unlock()
		start, now := time.Now(), time.Since(d.born)
		for _, tags := range [][]datastore.TagSeq{restored, logged} {
			for _, t := range tags {
				d.addLocked(t.Tag, t.Seq, now)
			}
		}
		d.pruneLocked(now)
		log.Info("idempotent writes: retry table filled from the log", "tags", d.tags.len(), "last_seq", last,
			"took", time.Since(start).Round(time.Millisecond))
	}
}

// since is tags, ascending by seq, from seq from on.
func since(tags []datastore.TagSeq, from uint64) []datastore.TagSeq {
	i, _ := slices.BinarySearchFunc(tags, from, func(t datastore.TagSeq, seq uint64) int { return cmp.Compare(t.Seq, seq) })
	return tags[i:]
}

// install adds tags of entries the node holds without their log entries:
// those of the snapshot its store was restored from.
func (d *dedupe) install(tags []datastore.TagSeq) {
	now := time.Since(d.born)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range tags {
		d.addLocked(t.Tag, t.Seq, now)
	}
	d.pruneLocked(now)
}

// window returns the table's tags of entries up to seq, oldest first.
func (d *dedupe) window(upTo uint64) []datastore.TagSeq {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []datastore.TagSeq
	d.tags.each(func(t tagged) {
		if t.seq <= upTo && d.tags.indexed(t) {
			out = append(out, datastore.TagSeq{Tag: t.tag, Seq: t.seq})
		}
	})
	return out
}

// inLog reports whether the entry at seq in the node's log carries tag,
// or, for an entry before the log's start, whether the snapshot the store
// was restored from covered it with that tag.
func (n *Node) inLog(tag datastore.Tag, seq uint64) bool {
	store := n.store()
	entries, err := store.ReadLog(seq, datastore.Limit{Entries: 1})
	if errors.Is(err, datastore.ErrLogTrimmed) {
		return store.HasRestoredTag(tag, seq)
	}
	return err == nil && len(entries) == 1 && entries[0].Seq == seq && entries[0].Tag == tag
}

// snapshotTags is the retry window a snapshot at seq carries: the table's
// tags of entries up to seq that store still holds, in its log or in the
// snapshot it was restored from, ascending by seq. The log is read in
// batches, not once per tag.
func (n *Node) snapshotTags(store *datastore.Store, seq uint64) ([]datastore.TagSeq, error) {
	tags := n.dedupe.window(seq)
	slices.SortFunc(tags, func(a, b datastore.TagSeq) int { return cmp.Compare(a.Seq, b.Seq) })
	held := tags[:0]
	var batch []datastore.LogEntry
	for _, t := range tags {
		if len(batch) == 0 || t.Seq < batch[0].Seq || t.Seq > batch[len(batch)-1].Seq {
			var err error
			batch, err = store.ReadLog(t.Seq, datastore.Limit{Entries: 4096, Bytes: shipBytes})
			if errors.Is(err, datastore.ErrLogTrimmed) {
				batch = nil
				if store.HasRestoredTag(t.Tag, t.Seq) {
					held = append(held, t)
				}
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read the log's tags from %d: %w", t.Seq, err)
			}
		}
		if len(batch) == 0 {
			continue // past the log's end
		}
		if i := t.Seq - batch[0].Seq; i < uint64(len(batch)) && batch[i].Seq == t.Seq && batch[i].Tag == t.Tag {
			held = append(held, t)
		}
	}
	return held, nil
}
