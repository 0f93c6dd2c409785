package datanode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/wire"
)

// positionEvery is how often the source tells the target how far it has
// scanned its log, records of the slots or not.
const positionEvery = 75 * time.Millisecond

// snapshotStep bounds how long a migration's copy holds one read
// transaction of the source's data file while it reads (sending and the
// pace wait come between two steps); the remap that file's growth may
// need waits that long at most.
const snapshotStep = 250 * time.Millisecond

// Migrate serves the copy of a migration's slots to the target group's
// primary: a copy of the slots, read in steps (unless the target resumes
// from a log position), then every log record of the slots from the copy's
// start, only up to the high watermark, with regular positions; all
// throttled at the migration's rate. Sends block while the target is slow
// to read, so the stream holds one message at a time.
func (s *service) Migrate(req *wire.MigrateRequest, rpc wire.DRPCData_MigrateStream) error {
	n := s.n
	p, m, err := n.migrationSource(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(rpc.Context())
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()
	src := &migrationSender{n: n, p: p, m: m, rpc: rpc, rate: throttle{bytesPerSec: m.RateMBps * 1e6}}
	log := n.log.With("migration", m.String())
	next := req.FromSeq
	if next == 0 {
		seq, records, err := src.sendSnapshot(ctx)
		if err != nil {
			return src.ended(ctx, fmt.Errorf("migration %s: snapshot: %w", m.ID, err))
		}
		log.Info("migration snapshot sent", "seq", seq, "records", records)
		next = seq + 1
	}
	log.Info("migration stream shipping the log", "from_seq", next)
	return src.ended(ctx, src.shipLog(ctx, next))
}

// migrationSource checks that this node may serve req: the primary of the
// migration's source group at the request's epoch, serving, with the
// migration in copy or hold in its slot table.
func (n *Node) migrationSource(req *wire.MigrateRequest) (*primary, coord.Migration, error) {
	st := n.state.Load()
	p := st.primary
	switch {
	case p == nil:
		return nil, coord.Migration{}, wire.Errorf(wire.Code_NOT_PRIMARY, "node %s is not the primary of group %s", n.id, n.cfg.Group)
	case req.SourceEpoch != p.epoch:
		return nil, coord.Migration{}, wire.Errorf(wire.Code_STALE_EPOCH, "group %s is at epoch %d, not %d: read the group again", n.cfg.Group, p.epoch, req.SourceEpoch)
	case !p.serving():
		return nil, coord.Migration{}, wire.Errorf(wire.Code_UNAVAILABLE, "node %s is taking over or handing over group %s", n.id, n.cfg.Group)
	}
	m := st.table.Migration(req.MigrationId)
	switch {
	case m == nil || m.From != n.cfg.Group:
		return nil, coord.Migration{}, wire.Errorf(wire.Code_UNAVAILABLE, "migration %s from group %s is not in node %s's slot table (v%d)", req.MigrationId, n.cfg.Group, n.id, st.table.Version)
	case uint32(m.First) != req.First || uint32(m.Last) != req.Last:
		return nil, coord.Migration{}, wire.Errorf(wire.Code_INVALID_ARGUMENT, "migration %s moves slots %d-%d, not %d-%d", m.ID, m.First, m.Last, req.First, req.Last)
	case m.State != coord.MigrationCopy && m.State != coord.MigrationHold:
		return nil, coord.Migration{}, wire.Errorf(wire.Code_UNAVAILABLE, "migration %s: %v", m.String(), errNotMigrating)
	}
	return p, *m, nil
}

// migrationSender is one Migrate stream.
type migrationSender struct {
	n    *Node
	p    *primary
	m    coord.Migration
	rpc  wire.DRPCData_MigrateStream
	rate throttle
	// faulted: the test fault hook corrupted this stream's first record.
	faulted bool
}

// ended turns why the stream stopped into what the target is told: the
// role's end, or a log that no longer holds what the target needs
// (NOT_FOUND: it starts the copy again).
func (src *migrationSender) ended(ctx context.Context, err error) error {
	switch {
	case src.p.ctx.Err() != nil:
		return wire.Errorf(wire.Code_NOT_PRIMARY, "node %s stopped leading group %s", src.n.id, src.n.cfg.Group)
	case errors.Is(err, datastore.ErrLogTrimmed):
		return wire.Errorf(wire.Code_NOT_FOUND, "migration %s: the source's log no longer holds the position to resume from: %v", src.m.ID, err)
	case ctx.Err() != nil:
		return nil
	}
	return err
}

// stillMigrating says whether the stream should go on: this role leads and
// its table has the migration in copy or hold.
func (src *migrationSender) stillMigrating() error {
	st := src.n.state.Load()
	m := st.table.Migration(src.m.ID)
	if st.primary != src.p || m == nil || (m.State != coord.MigrationCopy && m.State != coord.MigrationHold) {
		return wire.Errorf(wire.Code_UNAVAILABLE, "migration %s: %v", src.m.ID, errNotMigrating)
	}
	return nil
}

func (src *migrationSender) send(ctx context.Context, msg *wire.MigrateMessage, size int) error {
	if err := src.rate.wait(ctx, size); err != nil {
		return err
	}
	return src.rpc.Send(msg)
}

// sendSnapshot sends the slots' keys in chunks of at most snapshotChunk
// records and shipBytes, and returns the log position the copy reflects.
// The copy reads in steps (Store.SnapshotInSteps), one read transaction
// per shipBytes of chunks at most: the chunks a step read are sent, and
// the pace waited for, between two steps. A copy paced by the group's
// writers takes minutes; held in one transaction, it let the data file
// grow by all their writes, and its remap stalled every write of the node
// for seconds.
func (src *migrationSender) sendSnapshot(ctx context.Context) (seq uint64, records int, err error) {
	busy := busyPace{throttle: src.n.busyThrottle()}
	type parkedChunk struct {
		chunk *wire.SnapshotChunk
		size  int
	}
	var parked []parkedChunk // read in this step, sent after it
	parkedBytes := 0
	chunks := chunker{send: func(chunk *wire.SnapshotChunk, size int) error {
		parked = append(parked, parkedChunk{chunk, size})
		parkedBytes += size
		return nil
	}}
	sendParked := func() error {
		for len(parked) > 0 {
			p := parked[0]
			parked = parked[1:]
			committed, _ := src.p.watermark()
			if err := busy.wait(ctx, committed, p.size); err != nil {
				return err
			}
			if err := src.send(ctx, &wire.MigrateMessage{Body: &wire.MigrateMessage_SnapshotChunk{SnapshotChunk: p.chunk}}, p.size); err != nil {
				return err
			}
		}
		parkedBytes = 0
		return nil
	}
	seq, err = src.n.store().SnapshotInSteps(ctx, src.m.Slots(), snapshotStep, func(slot int, key, value []byte) error {
		records++
		if src.corrupt(&value) {
			return nil
		}
		if err := chunks.add(slot, key, value); err != nil {
			return err
		}
		if parkedBytes >= shipBytes {
			return datastore.ErrStepEnd
		}
		return nil
	}, sendParked)
	if err == nil {
		err = chunks.flush()
	}
	if err == nil {
		err = sendParked()
	}
	if err != nil {
		return 0, 0, err
	}
	end := &wire.MigrateMessage{Body: &wire.MigrateMessage_SnapshotEnd{SnapshotEnd: &wire.MigrateSnapshotEnd{Seq: seq}}}
	return seq, records, src.send(ctx, end, 0)
}

// shipLog scans the log from next on, only up to the high watermark, and
// sends the records of the slots with the position they bring the target
// to; every positionEvery it sends the position it scanned through, found
// records or not, and at once when it scanned the barrier of a hold: the
// hand-over waits for the target to reach it.
func (src *migrationSender) shipLog(ctx context.Context, next uint64) error {
	store := src.n.store()
	barrier := holdMarkName(src.m.ID)
	var lastPosition time.Time
	var bufs shipBuffers
	for {
		// The state is looked at after the watermark is read: whatever the
		// node writes once the migration has ended (the source's drop at
		// cleanup) is then above it, never shipped.
		committed, advanced := src.p.watermark()
		if err := src.stillMigrating(); err != nil {
			return err
		}
		urgent := false
		if next <= committed {
			entries, err := bufs.readLog(store, next)
			if err != nil {
				return fmt.Errorf("read log from %d: %w", next, err)
			}
			size := 0
			through := next - 1
			for _, e := range entries {
				if e.Seq > committed {
					break
				}
				through = e.Seq
				if e.Mark && string(e.Key) == barrier {
					urgent = true
				}
				if e.Mark || !src.m.Has(e.Slot) {
					continue
				}
				rec := bufs.wire(e)
				if src.corrupt(&rec.Value) {
					continue
				}
				bufs.out = append(bufs.out, rec)
				size += len(e.Key) + len(e.Value)
			}
			next = through + 1
			if len(bufs.out) > 0 {
				msg := &wire.MigrateMessage{Body: &wire.MigrateMessage_Entries{Entries: &wire.MigrateEntries{Records: bufs.out, Through: through}}}
				err = src.send(ctx, msg, size)
			}
			bufs.release()
			if err != nil {
				return err
			}
		}
		if urgent || time.Since(lastPosition) >= positionEvery {
			msg := &wire.MigrateMessage{Body: &wire.MigrateMessage_Position{Position: &wire.MigratePosition{Through: next - 1, Committed: committed}}}
			if err := src.send(ctx, msg, 0); err != nil {
				return err
			}
			lastPosition = time.Now()
		}
		if next > committed {
			wait := time.NewTimer(positionEvery)
			select {
			case <-ctx.Done():
				wait.Stop()
				return ctx.Err()
			case <-advanced:
			case <-wait.C:
			}
			wait.Stop()
		}
	}
}

// watermark is the primary's high watermark and the channel closed when it
// next moves.
func (p *primary) watermark() (committed uint64, advanced <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.committed, p.advanced
}

// corrupt applies the test fault hook to the first record of this stream:
// true means leave the record out ("drop"); "flip" changes its value.
// Every stream is corrupted, so a copy that restarted or resumed is caught
// as surely as the first. Without the hook it does nothing.
func (src *migrationSender) corrupt(value *[]byte) (drop bool) {
	fault := src.n.mig.fault
	if fault == "" || src.faulted {
		return false
	}
	src.faulted = true
	src.n.log.Warn("test fault: corrupting the first record of a migration stream", "migration", src.m.ID, "fault", fault)
	if fault == "drop" {
		return true
	}
	v := append([]byte{}, *value...)
	if len(v) == 0 {
		v = []byte{0}
	}
	v[0] ^= 0xff
	*value = v
	return false
}

// busyPace paces a snapshot at its throttle's rate while the source
// group's clients write: the source writes nothing of its own during a
// snapshot, so a watermark that moved since the chunk before is theirs.
type busyPace struct {
	throttle
	seen uint64 // the watermark at the chunk before; 0: none yet
}

// wait blocks until size more bytes fit the rate if the group's watermark,
// now committed, moved since the last call.
func (b *busyPace) wait(ctx context.Context, committed uint64, size int) error {
	moved := b.seen != 0 && committed != b.seen
	b.seen = committed
	if !moved {
		return nil
	}
	return b.throttle.wait(ctx, size)
}

// throttle paces a stream at bytesPerSec (0: unbounded).
type throttle struct {
	bytesPerSec float64
	start       time.Time
	sent        float64
}

// wait blocks until size more bytes fit the rate. An idle stream does not
// save up a burst: the pace restarts after a second of silence.
func (t *throttle) wait(ctx context.Context, size int) error {
	if t.bytesPerSec <= 0 || size == 0 {
		return nil
	}
	now := time.Now()
	if due := t.start.Add(time.Duration(t.sent / t.bytesPerSec * float64(time.Second))); t.start.IsZero() || now.Sub(due) > time.Second {
		t.start, t.sent = now, 0
	}
	t.sent += float64(size)
	due := t.start.Add(time.Duration(t.sent / t.bytesPerSec * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		return clock.Sleep(ctx, d)
	}
	return nil
}
