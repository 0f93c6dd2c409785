package datanode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/wire"
)

const (
	// shipBatch and shipBytes bound one Entries message: its entries, and
	// its keys and values (plus the one entry that crosses the bound), so a
	// run of large values never makes a message the follower cannot take.
	shipBatch = 2048
	shipBytes = 4 << 20
	// maxUnacked bounds the entries sent to a follower and not yet
	// acknowledged: flow control, so a slow follower is not flooded.
	maxUnacked = 200_000
	// heartbeat is how often an idle primary tells followers its high
	// watermark, so they can make the last writes visible.
	heartbeat = 200 * time.Millisecond
	// snapshotChunk bounds the records of one SnapshotChunk, and shipBytes
	// their keys and values.
	snapshotChunk = 1024
)

// Replicate serves one follower: it finds where the follower's log joins
// this one, sends a truncation point or a snapshot if needed, then ships
// the log as it grows, with the high watermark on every message.
func (s *service) Replicate(rpc wire.DRPCData_ReplicateStream) error {
	n := s.n
	st := n.state.Load()
	p := st.primary
	if p == nil {
		return wire.Errorf(wire.Code_NOT_PRIMARY, "node %s is not the primary of group %s", n.id, n.cfg.Group)
	}
	first, err := rpc.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	switch {
	case hello == nil:
		return wire.Errorf(wire.Code_INVALID_ARGUMENT, "replicate: the first message must be Hello")
	case hello.Group != n.cfg.Group:
		return wire.Errorf(wire.Code_INVALID_ARGUMENT, "replicate: node %s is in group %s, not %s", hello.NodeId, hello.Group, n.cfg.Group)
	case hello.NodeId == n.id || st.group == nil || !slices.Contains(st.group.Members, hello.NodeId):
		// Only members count towards the watermark.
		return wire.Errorf(wire.Code_INVALID_ARGUMENT, "replicate: node %q is not a member of group %s", hello.NodeId, n.cfg.Group)
	case hello.Epoch > p.epoch:
		// The follower knows a newer epoch: this node was deposed.
		return wire.Errorf(wire.Code_STALE_EPOCH, "replicate: stale primary: epoch %d, follower knows %d", p.epoch, hello.Epoch)
	}
	ctx, cancel := context.WithCancelCause(rpc.Context())
	defer cancel(nil)
	stop := context.AfterFunc(p.ctx, func() { cancel(nil) })
	defer stop()
	sh := &shipper{n: n, p: p, rpc: rpc, follower: hello.NodeId}
	// A member's newer stream closes this one (a reconnect whose old
	// connection is not dead yet, or somebody else using its id).
	sh.stream, sh.vouched = p.attach(hello.NodeId, func() { cancel(errReplaced) }, &sh.sent)
	defer p.detach(hello.NodeId, sh.stream)
	n.log.Info("follower attached", "follower", hello.NodeId, "follower_last_seq", hello.LastSeq, "epoch", p.epoch)

	go func() {
		if err := sh.readAcks(); ctx.Err() == nil {
			cancel(err)
		}
	}()
	err = sh.run(ctx, hello)
	// The stream's reasons come first: the shipper only saw it end.
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	cancel(nil)
	// readAcks ends when the stream closes, after this returns; waiting for
	// it here would wait for a follower that has nothing more to say.
	n.log.Info("follower detached", "follower", hello.NodeId, "err", err)
	if p.ctx.Err() != nil {
		return fmt.Errorf("primary role of epoch %d ended", p.epoch)
	}
	return err
}

// errReplaced ends a replication stream when its member opened a newer one.
var errReplaced = errors.New("replicate: the member opened a newer stream")

// readAcks records the follower's acknowledgements until the stream ends. An
// acknowledgement of more than this stream sent is a protocol error: it
// ends the stream and never counts.
func (sh *shipper) readAcks() error {
	for {
		msg, err := sh.rpc.Recv()
		if err != nil {
			return err
		}
		ack := msg.GetAck()
		if ack == nil {
			continue
		}
		if sent := sh.sent.Load(); ack.DurableSeq > sent {
			sh.n.log.Warn("follower acknowledged entries it was never sent; dropping its stream",
				"follower", sh.follower, "acked", ack.DurableSeq, "sent", sent)
			return wire.Errorf(wire.Code_INVALID_ARGUMENT, "replicate: protocol error: %s acknowledged seq %d, but only %d was sent on this stream", sh.follower, ack.DurableSeq, sent)
		}
		sh.p.acked(sh.follower, sh.stream, ack.DurableSeq)
	}
}

// shipper sends one follower its log.
type shipper struct {
	n        *Node
	p        *primary
	rpc      wire.DRPCData_ReplicateStream
	follower string
	stream   int    // the follower's stream generation (primary.attach)
	vouched  uint64 // how far the follower's Hello is believed (primary.attach)
	// sent is the end of the log the follower can hold from this stream:
	// where its log joined this one (as far as vouched), then what was
	// shipped. It moves before each send, so an honest acknowledgement
	// never passes it.
	sent atomic.Uint64
}

func (sh *shipper) send(body *wire.PrimaryMessage) error {
	body.Epoch = sh.p.epoch
	body.Committed = sh.n.store().CommittedSeq()
	return sh.rpc.Send(body)
}

func (sh *shipper) run(ctx context.Context, hello *wire.Hello) error {
	next, truncate, snapshot := startPoint(sh.n.store(), hello)
	if !snapshot {
		if _, err := sh.n.store().ReadLog(next, datastore.Limit{Entries: 1}); errors.Is(err, datastore.ErrLogTrimmed) {
			snapshot = true
		} else if err != nil {
			return err
		}
	}
	switch {
	case snapshot:
		seq, err := sh.sendSnapshot(ctx)
		if err != nil {
			return fmt.Errorf("snapshot for %s: %w", sh.follower, err)
		}
		next = seq + 1
	case truncate:
		sh.n.log.Info("follower diverged; truncating it", "follower", sh.follower, "after", next-1, "follower_last_seq", hello.LastSeq)
		sh.sent.Store(min(next-1, sh.vouched))
		if err := sh.send(&wire.PrimaryMessage{Body: &wire.PrimaryMessage_Truncate{Truncate: &wire.Truncate{After: next - 1}}}); err != nil {
			return err
		}
	default:
		// The follower's log equals this one up to next-1, it says.
		held := min(next-1, sh.vouched)
		sh.sent.Store(held)
		sh.p.acked(sh.follower, sh.stream, min(hello.DurableSeq, held))
	}
	for {
		err := sh.shipLog(ctx, next)
		if !errors.Is(err, datastore.ErrLogTrimmed) {
			return err
		}
		// The follower fell further behind than the log is kept.
		seq, err := sh.sendSnapshot(ctx)
		if err != nil {
			return fmt.Errorf("snapshot for %s: %w", sh.follower, err)
		}
		next = seq + 1
	}
}

// shipLog sends entries from next on as they are written (before this
// node's own fsync finishes, so replication overlaps it), bounded by the
// follower's acknowledgements.
func (sh *shipper) shipLog(ctx context.Context, next uint64) error {
	var bufs shipBuffers
	for ctx.Err() == nil {
		if next > sh.p.ackedOf(sh.follower)+maxUnacked {
			if err := clock.Sleep(ctx, time.Millisecond); err != nil {
				return nil
			}
			continue
		}
		entries, err := bufs.readLog(sh.n.store(), next)
		if err != nil {
			return fmt.Errorf("read log from %d: %w", next, err)
		}
		if len(entries) == 0 {
			wctx, cancel := context.WithTimeout(ctx, heartbeat)
			err := sh.n.store().WaitLog(wctx, next-1)
			cancel()
			switch {
			case err == nil:
				continue
			case ctx.Err() != nil:
				return nil
			case !errors.Is(err, context.DeadlineExceeded):
				return err
			}
			// Idle: the empty message carries the high watermark.
		}
		for _, e := range entries {
			bufs.out = append(bufs.out, bufs.wire(e))
		}
		msg := &wire.Entries{Entries: bufs.out}
		if len(entries) > 0 {
			next = entries[len(entries)-1].Seq + 1
			sh.sent.Store(next - 1)
		}
		err = sh.send(&wire.PrimaryMessage{Body: &wire.PrimaryMessage_Entries{Entries: msg}})
		bufs.release()
		if err != nil {
			return err
		}
	}
	return nil
}

// sendSnapshot streams a consistent copy of every slot, taken from one read
// transaction while writes go on (docs/replication.md, "Catch-up"), and returns the
// log position it reflects.
func (sh *shipper) sendSnapshot(ctx context.Context) (uint64, error) {
	start := time.Now()
	sh.n.log.Info("sending snapshot", "follower", sh.follower)
	if err := sh.send(&wire.PrimaryMessage{Body: &wire.PrimaryMessage_SnapshotBegin{SnapshotBegin: &wire.SnapshotBegin{}}}); err != nil {
		return 0, err
	}
	slots := make([]int, sh.n.store().Slots())
	for i := range slots {
		slots[i] = i
	}
	records := 0
	chunks := chunker{send: func(chunk *wire.SnapshotChunk, _ int) error {
		return sh.send(&wire.PrimaryMessage{Body: &wire.PrimaryMessage_SnapshotChunk{SnapshotChunk: chunk}})
	}}
	seq, err := sh.n.store().Snapshot(ctx, slots, func(slot int, key, value []byte) error {
		records++
		return chunks.add(slot, key, value)
	})
	if err == nil {
		err = chunks.flush()
	}
	if err != nil {
		return 0, err
	}
	end := &wire.SnapshotEnd{Seq: seq}
	for _, e := range sh.n.store().Epochs() {
		end.Epochs = append(end.Epochs, &wire.EpochStart{Epoch: e.Epoch, StartSeq: e.StartSeq})
	}
	// The follower's log will start after seq: without the tags of the
	// entries the snapshot covers, it would write their retries again
	// once it leads.
	tags, err := sh.n.snapshotTags(sh.n.store(), seq)
	if err != nil {
		return 0, err
	}
	end.Tags = make([]*wire.SnapshotTag, len(tags))
	for i, t := range tags {
		end.Tags[i] = &wire.SnapshotTag{Seq: t.Seq, ClientId: t.Tag.Client, ClientSeq: t.Tag.Seq}
	}
	sh.sent.Store(seq)
	if err := sh.send(&wire.PrimaryMessage{Body: &wire.PrimaryMessage_SnapshotEnd{SnapshotEnd: end}}); err != nil {
		return 0, err
	}
	took := time.Since(start)
	sh.n.log.Info("snapshot sent", "follower", sh.follower, "records", records, "seq", seq, "tags", len(tags), "took", took.Round(time.Millisecond),
		"records_per_sec", int(float64(records)/max(took.Seconds(), 1e-6)))
	return seq, nil
}

func (p *primary) ackedOf(id string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.members[id]; f != nil {
		return f.acked
	}
	return 0
}

// shipBuffers are a shipping loop's log entries, read and converted for
// the wire, reused from one send to the next: drpc marshals a message
// within Send, and a primary ships every entry to every follower, so
// allocating them anew for each send made a quarter of a primary's
// allocations.
type shipBuffers struct {
	read  []datastore.LogEntry
	wired []wire.LogEntry
	out   []*wire.LogEntry // the wire entries to send, which the loop chooses
}

// readLog reads the entries from next on, within one send's bounds, in
// place of the previous ones; the previous wire entries are dropped too.
func (b *shipBuffers) readLog(store *datastore.Store, next uint64) ([]datastore.LogEntry, error) {
	b.release()
	var err error
	b.read, err = store.AppendLog(b.read, next, datastore.Limit{Entries: shipBatch, Bytes: shipBytes})
	if cap(b.wired) < len(b.read) {
		b.wired = make([]wire.LogEntry, 0, len(b.read))
	}
	return b.read, err
}

// release drops the entries read and their wire copies, once sent. They
// are cleared, not only cut: the keys and values they point at are the
// store's, which lets them go once applied, and a loop may idle a while
// before its next read.
func (b *shipBuffers) release() {
	clear(b.read)
	clear(b.wired)
	clear(b.out)
	b.read, b.wired, b.out = b.read[:0], b.wired[:0], b.out[:0]
}

// wire returns e as the wire carries it, valid until release.
func (b *shipBuffers) wire(e datastore.LogEntry) *wire.LogEntry {
	// No reallocation, so earlier results stay in place: readLog made
	// room for every entry it read.
	b.wired = append(b.wired, wire.LogEntry{Seq: e.Seq, Epoch: e.Epoch, Slot: uint32(e.Slot), Key: e.Key, Value: e.Value, Delete: e.Delete,
		DropSlot: e.Drop, Mark: e.Mark, ClientId: e.Tag.Client, ClientSeq: e.Tag.Seq})
	return &b.wired[len(b.wired)-1]
}

// storeLogEntry is a log entry as the wire carried it, in the store's
// terms.
func storeLogEntry(e *wire.LogEntry) datastore.LogEntry {
	return datastore.LogEntry{Seq: e.Seq, Epoch: e.Epoch, Slot: int(e.Slot), Key: e.Key, Value: e.Value, Delete: e.Delete, Drop: e.DropSlot, Mark: e.Mark,
		Tag: datastore.Tag{Client: e.ClientId, Seq: e.ClientSeq}}
}

// chunker gathers snapshot records into chunks of at most snapshotChunk
// records and shipBytes of keys and values (plus the record that crosses
// it), and hands each to send with its size. It copies keys and values into
// one buffer per chunk: Store.Snapshot's slices are valid only during its
// callback, and the last chunk is sent after Snapshot returned.
type chunker struct {
	chunk *wire.SnapshotChunk
	buf   []byte
	size  int
	send  func(chunk *wire.SnapshotChunk, size int) error
}

func (c *chunker) add(slot int, key, value []byte) error {
	if c.chunk == nil {
		c.chunk = &wire.SnapshotChunk{}
		c.buf = make([]byte, 0, min(shipBytes, 64<<10))
	}
	var k, v []byte
	k, c.buf = carve(c.buf, key)
	v, c.buf = carve(c.buf, value)
	c.chunk.Records = append(c.chunk.Records, &wire.SnapshotRecord{Slot: uint32(slot), Key: k, Value: v})
	c.size += len(key) + len(value)
	if len(c.chunk.Records) >= snapshotChunk || c.size >= shipBytes {
		return c.flush()
	}
	return nil
}

// carve appends b to buf and returns the copy, capped so that later appends
// to buf never write into it, and the grown buf.
func carve(buf, b []byte) (cp, rest []byte) {
	off := len(buf)
	buf = append(buf, b...)
	return buf[off:len(buf):len(buf)], buf
}

// flush sends what was gathered, if anything.
func (c *chunker) flush() error {
	if c.chunk == nil || len(c.chunk.Records) == 0 {
		return nil
	}
	chunk, size := c.chunk, c.size
	c.chunk, c.buf, c.size = nil, nil, 0
	return c.send(chunk, size)
}
