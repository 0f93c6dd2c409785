package datanode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/wire"
)

// silentSource is how long the importer waits without any message from
// the source before it drops the stream and connects again: the source
// sends a position every positionEvery.
const silentSource = 10 * time.Second

// importBatch bounds how many snapshot records (and at most shipBytes of
// them), or log records already received (gatherLog; the receive window
// bounds their bytes), the importer gathers into one write: every write
// waits for the group's commit, so one per snapshot chunk made the copy
// wait on a round of fsyncs per 1,024 small records.
const importBatch = 16 << 10

// While the group's clients write too (seen from the write after the one
// they came before), a snapshot write carries at most sharedImportBatch
// records, the import waits for each to commit before it writes the next,
// and it goes on no faster than Config.BusyCopyRate: a client's write
// committed with or right after a batch waits for the batch's log write,
// fsync and replication, and the copy's CPU (about 5 µs a key over the
// groups' members) and disk writes (log, spare segments, pages) are taken
// from the clients' requests. Small batches keep what one commit adds to
// a client's write small (64 records of 100 bytes: ~8 KB), and one
// commit per batch still keeps up with the default busy pace. The source
// paces its snapshot the same way while its own clients write
// (sendSnapshot).
const sharedImportBatch = 64

// DefaultBusyCopyRate is Config.BusyCopyRate's default, 2 MB/s: on the
// project's 2-core machine the other slots' writers kept within 2× their
// idle p99 during rebalances at it; half the rate took only about 2 ms
// off the drain seconds' p99 (docs/migration.md).
const DefaultBusyCopyRate = 2e6

// busyThrottle paces a copy at the node's busy rate (unbounded if negative).
func (n *Node) busyThrottle() throttle {
	return throttle{bytesPerSec: max(n.cfg.BusyCopyRate, 0)}
}

// logShare follows whether an import shares its group's log with the
// group's clients: whether other writes came between its last two writes
// (another import into the group, when the coordinator runs more than one
// per group, counts too: the two then take turns).
type logShare struct {
	last   uint64 // the seq of the import's last write; 0: none yet
	shared bool
}

// wrote notes a write of the import's entries first..last and says whether
// other writes came since the import's write before.
func (l *logShare) wrote(first, last uint64) bool {
	l.shared = l.last != 0 && first > l.last+1
	l.last = last
	return l.shared
}

// snapshotBatch is how many snapshot records the next write may carry.
func (l *logShare) snapshotBatch() int {
	if l.shared {
		return sharedImportBatch
	}
	return importBatch
}

// importer copies one migration's slots into the target group while its
// primary role lasts: the source's snapshot and log records become writes
// of this primary, each batch with the mark migration/<id> set to the
// source position it brings the copy to, admitted and committed like any
// write (so the group's in-sync replicas hold them). The slots stay
// hidden meanwhile: the node answers MOVED for slots its group does not
// own.
type importer struct {
	n *Node
	p *primary
	m coord.Migration

	// through is the source position this role imported and committed;
	// valid when resumable.
	through uint64
	// positions follows the committed positions into the store: the
	// report shows the applied one in copy, the committed one in hold.
	positions importPositions
	// apply applies the import as it is committed, so the applied
	// position reported in copy trails the committed one little (by a
	// few seconds of the busy pace while the group's clients write).
	apply      *applyPacer
	resumable  bool
	restart    bool // the source cannot resume from through: copy again
	snapshotOK atomic.Bool
	// The source's watermark in its newest position message, and in the
	// one before: caught up means the copy reached the latter. heard: a
	// position message came; before it the watermark is unknown, not 0.
	sourceCommitted, prevCommitted atomic.Uint64
	heard                          atomic.Bool
	keys, bytes                    atomic.Uint64
	// staged holds snapshot records received but not yet written, and
	// their size: they are written with the next chunk that fills the
	// batch, or with the snapshot's end.
	staged      []datastore.Mutation
	stagedBytes int
	share       logShare
	busy        throttle

	errMu   sync.Mutex
	lastErr error
}

func newImporter(n *Node, p *primary, m coord.Migration) *importer {
	return &importer{n: n, p: p, m: m, apply: newApplyPacer(), busy: n.busyThrottle()}
}

// run imports until ctx ends (the role ended, or the migration left copy
// and hold).
func (imp *importer) run(ctx context.Context) {
	log := imp.n.log.With("migration", imp.m.String())
	// Once the role serves, the mark is the position of everything it took
	// over, committed.
	select {
	case <-imp.p.ready:
	case <-ctx.Done():
		return
	}
	applying := make(chan struct{})
	go func() { defer close(applying); imp.apply.run(ctx, imp.n.store) }()
	defer func() { <-applying }() // ctx ends first: run returns when it does
	for backoff := retryMin; ctx.Err() == nil; {
		if !imp.resumable {
			if err := imp.resume(ctx); err != nil {
				imp.failed(ctx, log, "starting the import failed", err)
				backoff = imp.pause(ctx, backoff)
				continue
			}
		}
		progressed, err := imp.stream(ctx, log)
		if ctx.Err() != nil {
			return
		}
		if wire.CodeOf(err) == wire.Code_NOT_FOUND || progressed && !imp.snapshotOK.Load() {
			// The source's log no longer reaches back to the position, or
			// a snapshot was cut short: copy again from an empty range.
			imp.resumable, imp.restart = false, true
		}
		if progressed {
			backoff = retryMin
		}
		imp.failed(ctx, log, "migration stream ended; connecting again", err)
		backoff = imp.pause(ctx, backoff)
	}
}

func (imp *importer) pause(ctx context.Context, backoff time.Duration) time.Duration {
	_ = clock.Sleep(ctx, backoff)
	return min(2*backoff, retryMax)
}

func (imp *importer) failed(ctx context.Context, log *slog.Logger, what string, err error) {
	if ctx.Err() != nil || err == nil {
		return
	}
	imp.errMu.Lock()
	imp.lastErr = err
	imp.errMu.Unlock()
	log.Warn(what, "err", err)
}

// resume reads the committed import position; with none (a fresh
// attempt), or when the source cannot resume from it, it first drops the
// slots, so nothing an earlier attempt left can come back.
func (imp *importer) resume(ctx context.Context) error {
	if !imp.restart {
		through, ok, err := importedThrough(ctx, imp.n.store(), imp.m.ID)
		if err != nil {
			return fmt.Errorf("read the import position: %w", err)
		}
		if ok {
			imp.through, imp.resumable = through, true
			imp.positions.reset()
			imp.positions.committed(imp.n.store().CommittedSeq(), through)
			imp.snapshotOK.Store(true)
			imp.n.log.Info("migration import resumes", "migration", imp.m.String(), "through", through)
			return nil
		}
	}
	imp.positions.reset() // before the drop: no report pairs the old position with dropped slots
	if _, err := imp.p.commitWrite(ctx, dropMutations(imp.m, true)); err != nil {
		return fmt.Errorf("drop the slots before the copy: %w", err)
	}
	imp.through, imp.resumable, imp.restart = 0, true, false
	imp.snapshotOK.Store(false)
	imp.keys.Store(0)
	imp.bytes.Store(0)
	imp.n.log.Info("migration import starts with a snapshot", "migration", imp.m.String())
	return nil
}

// The importer receives ahead of the message it writes, so that the source
// keeps sending while a batch is written and replicates: up to
// importAheadBytes of keys and values (a message larger than that passes
// alone) in at most importAheadMessages messages. A whole batch of small
// records is 16 snapshot chunks: a window of 4 messages stalled the source
// for most of each batch's commit. Large values still hold little memory.
const (
	importAheadBytes    = 2 * shipBytes
	importAheadMessages = 64
)

// received is one message of the stream, or the error that ended it, and
// the bytes it holds in the receive window.
type received struct {
	msg  *wire.MigrateMessage
	err  error
	size int
}

// aheadWindow bounds the bytes of the messages received and not yet taken
// by the writer. One goroutine takes, another gives back.
type aheadWindow struct {
	limit int64
	held  atomic.Int64
	freed chan struct{} // a give since the last take looked
}

func newAheadWindow(limit int64) *aheadWindow {
	return &aheadWindow{limit: limit, freed: make(chan struct{}, 1)}
}

// take waits until n more bytes fit the window, or it is empty, or ctx
// ends.
func (w *aheadWindow) take(ctx context.Context, n int) error {
	for {
		if held := w.held.Load(); held == 0 || held+int64(n) <= w.limit {
			w.held.Add(int64(n))
			return nil
		}
		select {
		case <-w.freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// give returns n bytes to the window.
func (w *aheadWindow) give(n int) {
	w.held.Add(-int64(n))
	select {
	case w.freed <- struct{}{}:
	default:
	}
}

// messageBytes is what a stream message holds in keys and values.
func messageBytes(msg *wire.MigrateMessage) int {
	n := 0
	for _, r := range msg.GetSnapshotChunk().GetRecords() {
		n += len(r.Key) + len(r.Value)
	}
	for _, r := range msg.GetEntries().GetRecords() {
		n += len(r.Key) + len(r.Value)
	}
	return n
}

// written is a batch in this node's log whose commit the importer has not
// waited for yet: the import is a pipeline — while one batch replicates to
// the group's in-sync replicas the next is received and written.
type written struct {
	seq         uint64
	through     uint64
	positioned  bool
	keys, bytes uint64
	// shared: snapshot records written while the group's clients wrote
	// too (logShare).
	shared bool
}

// stream runs one Migrate stream from the source group's current primary.
func (imp *importer) stream(ctx context.Context, log *slog.Logger) (progressed bool, err error) {
	rt, err := imp.n.cfg.Cluster.Routes(ctx)
	if err != nil {
		return false, err
	}
	g, ok := rt.Groups[imp.m.From]
	if !ok || g.PrimaryAddr == "" {
		return false, fmt.Errorf("source group %s has no registered primary", imp.m.From)
	}
	conn, err := wire.Dial(ctx, g.PrimaryAddr, imp.n.dialOptions())
	if err != nil {
		return false, fmt.Errorf("source group %s primary: %w", imp.m.From, err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	silence := time.AfterFunc(silentSource, func() {
		cancel(fmt.Errorf("source group %s primary silent for %s", imp.m.From, silentSource))
	})
	defer silence.Stop()
	req := &wire.MigrateRequest{MigrationId: imp.m.ID, First: uint32(imp.m.First), Last: uint32(imp.m.Last),
		SourceEpoch: g.Epoch, RateMbps: imp.m.RateMBps}
	if imp.snapshotOK.Load() {
		req.FromSeq = imp.through + 1
	}
	rpc, err := wire.NewDRPCDataClient(conn).Migrate(sctx, req)
	if err != nil {
		return false, fmt.Errorf("open the migration stream: %w", err)
	}
	log.Info("migration stream open", "source", g.PrimaryAddr, "source_epoch", g.Epoch, "from_seq", req.FromSeq)
	msgs := make(chan received, importAheadMessages)
	ahead := newAheadWindow(importAheadBytes)
	var receiving sync.WaitGroup
	receiving.Add(1)
	go func() {
		defer receiving.Done()
		imp.receive(sctx, rpc, silence, ahead, msgs)
	}()
	defer receiving.Wait() // after cancel: deferred calls run last first
	defer cancel(nil)

	imp.staged, imp.stagedBytes = nil, 0 // a snapshot cut short is copied again from the drop
	imp.share = logShare{}               // nothing to compare with yet (a restart first wrote its drop)
	through, ended := imp.through, imp.snapshotOK.Load()
	var last *written
	var held *received // taken while gathering a batch, not part of it
	for {
		var r received
		if held != nil {
			r, held = *held, nil
		} else {
			r = imp.next(sctx, msgs, ahead, &last)
		}
		if r.err != nil {
			if cause := context.Cause(sctx); cause != nil && ctx.Err() == nil {
				r.err = cause
			}
			// What was written may still commit: settle it, briefly, so a
			// new stream resumes from there rather than from further back
			// (which would be safe too: the records apply again in order).
			settleCtx, stop := context.WithTimeout(ctx, silentSource)
			defer stop()
			_ = imp.settle(settleCtx, last) // the stream's error says why it ended
			return progressed, r.err
		}
		batch := []*wire.MigrateMessage{r.msg}
		batch, held = gatherLog(batch, msgs, ahead)
		var err error
		if last != nil && last.shared {
			// Shared with the clients: the log is theirs between two
			// batches, not one batch ahead.
			if err = imp.settle(sctx, last); err == nil {
				err = imp.busy.wait(sctx, int(last.bytes))
			}
			last = nil
		}
		var w *written
		if err == nil {
			w, err = imp.write(sctx, batch, &through, &ended)
		}
		if err == nil {
			err = imp.settle(sctx, last)
			last = w
		}
		if err != nil {
			if cause := context.Cause(sctx); cause != nil && ctx.Err() == nil {
				err = cause // the source fell silent meanwhile
			}
			return progressed, err
		}
		if !progressed {
			imp.errMu.Lock()
			imp.lastErr = nil // the report shows errors while they last
			imp.errMu.Unlock()
		}
		progressed = true
	}
}

// next returns the next message of the stream. When none waits, it first
// settles the last batch (and forgets it), so that a copy that caught up
// reports a committed position at once. A settle that fails ends the
// stream as an error of the stream would.
func (imp *importer) next(ctx context.Context, msgs <-chan received, ahead *aheadWindow, last **written) received {
	var r received
	select {
	case r = <-msgs:
	default:
		err := imp.settle(ctx, *last)
		*last = nil // settled, or its failure ends the stream
		if err != nil {
			return received{err: err}
		}
		select {
		case r = <-msgs:
		case <-ctx.Done():
			r.err = ctx.Err()
		}
	}
	ahead.give(r.size)
	return r
}

// gatherLog adds to a batch starting with log records or a position the
// ones already received after it, up to importBatch records: behind a
// source that commits often, each message carries a few records, and one
// write (one commit) per message made the import only as fast as the
// source wrote, with the stream's buffers as a standing queue that a hold
// had to wait out. It returns the first message it took but could not add
// (an error, or part of a snapshot), nil if none.
func gatherLog(batch []*wire.MigrateMessage, msgs <-chan received, ahead *aheadWindow) ([]*wire.MigrateMessage, *received) {
	records := logRecords(batch[0])
	for records >= 0 && records < importBatch {
		select {
		case r := <-msgs:
			ahead.give(r.size)
			n := -1
			if r.err == nil {
				n = logRecords(r.msg)
			}
			if n < 0 {
				return batch, &r
			}
			batch, records = append(batch, r.msg), records+n
		default:
			return batch, nil
		}
	}
	return batch, nil
}

// logRecords is how many log records msg carries, -1 if it is not log
// records or a position.
func logRecords(msg *wire.MigrateMessage) int {
	switch body := msg.Body.(type) {
	case *wire.MigrateMessage_Entries:
		return len(body.Entries.Records)
	case *wire.MigrateMessage_Position:
		return 0
	}
	return -1
}

// receive passes the stream's messages to msgs, as far as the window
// lets it run ahead, until the stream fails; its last message carries the
// error.
func (imp *importer) receive(ctx context.Context, rpc wire.DRPCData_MigrateClient, silence *time.Timer, ahead *aheadWindow, msgs chan<- received) {
	for {
		msg, err := rpc.Recv()
		if err != nil {
			err = wire.FromRPC(err)
		}
		silence.Reset(silentSource)
		size := messageBytes(msg)
		if ahead.take(ctx, size) != nil {
			return
		}
		select {
		case msgs <- received{msg: msg, err: err, size: size}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// write appends messages of the stream to the log as one write, without
// waiting for its commit: one message, or log records and positions in a
// row (gatherLog). through and ended are the position and whether the
// snapshot ended, as far as written: they run ahead of imp.through and
// imp.snapshotOK, which settle moves once a batch is committed. A nil
// batch means the message is staged or carried nothing.
func (imp *importer) write(ctx context.Context, msgs []*wire.MigrateMessage, through *uint64, ended *bool) (*written, error) {
	var muts []datastore.Mutation
	at, positioned := uint64(0), false
	for _, msg := range msgs {
		switch body := msg.Body.(type) {
		case *wire.MigrateMessage_SnapshotChunk:
			if *ended {
				return nil, errors.New("migration stream: snapshot chunk after the snapshot")
			}
			for _, r := range body.SnapshotChunk.Records {
				imp.staged = append(imp.staged, datastore.Mutation{Slot: int(r.Slot), Key: r.Key, Value: r.Value})
				imp.stagedBytes += len(r.Key) + len(r.Value)
			}
			if len(imp.staged) < imp.share.snapshotBatch() && imp.stagedBytes < shipBytes {
				return nil, imp.checkSlots(imp.staged[len(imp.staged)-len(body.SnapshotChunk.Records):])
			}
			muts, imp.staged, imp.stagedBytes = imp.staged, nil, 0
		case *wire.MigrateMessage_SnapshotEnd:
			at, positioned = body.SnapshotEnd.Seq, true
			muts, imp.staged, imp.stagedBytes = imp.staged, nil, 0
		case *wire.MigrateMessage_Entries:
			for _, r := range body.Entries.Records {
				// The writers' tags come along, so a retry that reaches the
				// target after the switch is known here too.
				muts = append(muts, datastore.Mutation{Slot: int(r.Slot), Key: r.Key, Value: r.Value, Delete: r.Delete, Drop: r.DropSlot,
					Tag: datastore.Tag{Client: r.ClientId, Seq: r.ClientSeq}})
			}
			at, positioned = body.Entries.Through, true
		case *wire.MigrateMessage_Position:
			imp.prevCommitted.Store(imp.sourceCommitted.Load())
			imp.sourceCommitted.Store(body.Position.Committed)
			imp.heard.Store(true)
			if body.Position.Through > max(*through, at) {
				at, positioned = body.Position.Through, true
			}
		}
		if positioned && !*ended && msg.GetSnapshotEnd() == nil {
			return nil, errors.New("migration stream: log records before the snapshot's end")
		}
	}
	if err := imp.checkSlots(muts); err != nil {
		return nil, err
	}
	w := &written{keys: uint64(len(muts)), positioned: positioned, through: at}
	for _, mu := range muts {
		w.bytes += uint64(len(mu.Key) + len(mu.Value))
	}
	if positioned {
		muts = append(muts, markMutation(imp.m.ID, at, true))
		*through, *ended = at, true
	}
	if len(muts) == 0 {
		return nil, nil
	}
	seq, err := imp.p.appendWrite(ctx, muts)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	w.seq = seq
	w.shared = imp.share.wrote(seq+1-uint64(len(muts)), seq) && !positioned
	return w, nil
}

// settle waits until w (nil: nothing) is committed, then counts it and
// moves the import position to it.
func (imp *importer) settle(ctx context.Context, w *written) error {
	if w == nil {
		return nil
	}
	if err := imp.p.waitCommitted(ctx, w.seq); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if w.positioned {
		imp.through = w.through
		imp.positions.committed(w.seq, w.through)
		imp.snapshotOK.Store(true)
	}
	imp.positions.appliedAt(imp.n.store().AppliedSeq()) // forgets what the applier passed
	// Caught up, the copy waits only for this batch to be applied (the
	// coordinator holds once it is): no pause before the round.
	caughtUp := w.positioned && w.through >= imp.sourceCommitted.Load()
	imp.apply.ask(w.seq, caughtUp, imp.share.shared)
	imp.keys.Add(w.keys)
	imp.bytes.Add(w.bytes)
	imp.n.metrics.migrateKeys.Add(float64(w.keys))
	imp.n.metrics.migrateBytes.Add(float64(w.bytes))
	return nil
}

// checkSlots refuses records of slots the migration does not move.
func (imp *importer) checkSlots(muts []datastore.Mutation) error {
	for _, mu := range muts {
		if !imp.m.Has(mu.Slot) || mu.Mark {
			return fmt.Errorf("migration stream: a record of slot %d, not one of the migration's", mu.Slot)
		}
	}
	return nil
}

// report fills the target's report: the import position its store has
// applied (what is committed but not yet applied counts as lag, so that a
// hold starts with few unapplied records for its digests to merge, which
// costs about a microsecond each), the source's watermark, what was
// copied, and in hold the committed import position with the slots'
// digests there (the coordinator compares them once the position reached
// the source's frozen seq; they never wait for the applier).
func (imp *importer) report(ctx context.Context, r *wire.MigrationStatus, hold bool) {
	store := imp.n.store()
	r.Phase = "copying"
	// Done only once the source's watermark is known too: a done snapshot
	// reported with the watermark still 0 read as no lag, and the hold
	// started with all the log written during the copy still to come (it
	// ran out of time after 1 s; the copy's log arrives after its end, and
	// the resumed import of a new primary starts without a watermark).
	r.SnapshotDone = imp.snapshotOK.Load() && imp.heard.Load()
	r.SourceCommitted = imp.sourceCommitted.Load()
	r.Keys, r.Bytes = imp.keys.Load(), imp.bytes.Load()
	imp.errMu.Lock()
	if imp.lastErr != nil {
		r.Error = imp.lastErr.Error()
	}
	imp.errMu.Unlock()
	through, ok := imp.positions.appliedAt(store.AppliedSeq())
	if hold {
		if at, digests, err := store.CommittedSlotDigests(ctx, imp.m.Slots(), 0); err == nil {
			if committed, cok := imp.positions.at(at); cok {
				through, ok, r.Digests = committed, true, wireDigests(digests)
			}
		}
	}
	if !ok {
		r.Digests = nil
		return
	}
	r.ImportedSeq = through
	if prev := imp.prevCommitted.Load(); r.SnapshotDone && prev > 0 && through >= prev {
		r.Phase = "caught-up"
	}
}

// importPositions follows an import's positions from committed (the
// batch carrying the mark is on the group's in-sync replicas) to applied
// (the applier put it in the store, where reads and digests see it).
type importPositions struct {
	mu sync.Mutex
	// pending are the committed positions not yet known applied, by
	// ascending seq.
	pending []seqPosition
	// applied is the newest position known applied; valid when ok.
	applied seqPosition
	ok      bool
}

// seqPosition is a source position and the seq of this node's log that
// recorded it.
type seqPosition struct{ seq, through uint64 }

// reset forgets every position: the slots were dropped.
func (ip *importPositions) reset() {
	ip.mu.Lock()
	defer ip.mu.Unlock()
	ip.pending, ip.applied, ip.ok = nil, seqPosition{}, false
}

// committed records that the log's seq, committed, carries the position
// through. Seqs come in ascending order.
func (ip *importPositions) committed(seq, through uint64) {
	ip.mu.Lock()
	defer ip.mu.Unlock()
	ip.pending = append(ip.pending, seqPosition{seq: seq, through: through})
}

// appliedAt returns the position a store applied through seq reflects,
// and forgets the pending positions at or below seq; ok is false while no
// position is applied.
func (ip *importPositions) appliedAt(seq uint64) (through uint64, ok bool) {
	return ip.position(seq, true)
}

// at returns the position a store holding this node's log through seq
// reflects, forgetting none; ok is false while there is none, or when the
// newest position known applied is past seq (the caller's view of the
// store is older than it).
func (ip *importPositions) at(seq uint64) (through uint64, ok bool) {
	return ip.position(seq, false)
}

func (ip *importPositions) position(seq uint64, forget bool) (through uint64, ok bool) {
	ip.mu.Lock()
	defer ip.mu.Unlock()
	if ip.ok && ip.applied.seq > seq {
		if forget {
			return ip.applied.through, true
		}
		return 0, false
	}
	at, ok := ip.applied, ip.ok
	n := 0
	for n < len(ip.pending) && ip.pending[n].seq <= seq {
		at, ok = ip.pending[n], true
		n++
	}
	if forget {
		ip.applied, ip.ok = at, ok
		ip.pending = ip.pending[n:]
	}
	return at.through, ok
}
