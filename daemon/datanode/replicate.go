package datanode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/wire"
)

const (
	// shipBatch bounds the entries of one Entries message.
	shipBatch = 2048
	// maxUnacked bounds the entries sent to a follower and not yet
	// acknowledged: flow control, so a slow follower is not flooded.
	maxUnacked = 200_000
	// heartbeat is how often an idle primary tells followers its high
	// watermark, so they can make the last writes visible.
	heartbeat = 200 * time.Millisecond
	// snapshotChunk bounds the records of one SnapshotChunk.
	snapshotChunk = 1024
)

// Replicate serves one follower: it finds where the follower's log joins
// this one, sends a truncation point or a snapshot if needed, then ships
// the log as it grows, with the high watermark on every message.
func (s *service) Replicate(rpc wire.DRPCData_ReplicateStream) error {
	n := s.n
	p := n.state.Load().primary
	if p == nil {
		return fmt.Errorf("node %s is not the primary of group %s", n.id, n.cfg.Group)
	}
	first, err := rpc.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	switch {
	case hello == nil:
		return errors.New("replicate: the first message must be Hello")
	case hello.Group != n.cfg.Group:
		return fmt.Errorf("replicate: node %s is in group %s, not %s", hello.NodeId, hello.Group, n.cfg.Group)
	case hello.Epoch > p.epoch:
		// The follower knows a newer epoch: this node was deposed.
		return fmt.Errorf("replicate: stale primary: epoch %d, follower knows %d", p.epoch, hello.Epoch)
	}
	ctx, cancel := context.WithCancel(rpc.Context())
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()
	gen := p.attach(hello.NodeId)
	defer p.detach(hello.NodeId, gen)
	n.log.Info("follower attached", "follower", hello.NodeId, "follower_last_seq", hello.LastSeq, "epoch", p.epoch)

	acks := make(chan error, 1)
	go func() { acks <- readAcks(rpc, p, hello.NodeId) }()
	sh := &shipper{n: n, p: p, rpc: rpc, follower: hello.NodeId}
	err = sh.run(ctx, hello)
	cancel()
	// readAcks ends when the stream closes, after this returns; waiting for
	// it here would wait for a follower that has nothing more to say.
	select {
	case ackErr := <-acks:
		if err == nil && ctx.Err() == nil {
			err = ackErr
		}
	default:
	}
	n.log.Info("follower detached", "follower", hello.NodeId, "err", err)
	if p.ctx.Err() != nil {
		return fmt.Errorf("primary role of epoch %d ended", p.epoch)
	}
	return err
}

// readAcks records the follower's acknowledgements until the stream ends.
func readAcks(rpc wire.DRPCData_ReplicateStream, p *primary, id string) error {
	for {
		msg, err := rpc.Recv()
		if err != nil {
			return err
		}
		if ack := msg.GetAck(); ack != nil {
			p.acked(id, ack.DurableSeq)
		}
	}
}

// shipper sends one follower its log.
type shipper struct {
	n        *Node
	p        *primary
	rpc      wire.DRPCData_ReplicateStream
	follower string
}

func (sh *shipper) send(body *wire.PrimaryMessage) error {
	body.Epoch = sh.p.epoch
	body.Committed = sh.n.store.CommittedSeq()
	return sh.rpc.Send(body)
}

func (sh *shipper) run(ctx context.Context, hello *wire.Hello) error {
	next, truncate, snapshot := startPoint(sh.n.store, hello)
	if !snapshot {
		if _, err := sh.n.store.ReadLog(next, 1); errors.Is(err, datastore.ErrLogTrimmed) {
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
		if err := sh.send(&wire.PrimaryMessage{Body: &wire.PrimaryMessage_Truncate{Truncate: &wire.Truncate{After: next - 1}}}); err != nil {
			return err
		}
	default:
		// The follower's log equals this one up to next-1.
		sh.p.acked(sh.follower, min(hello.DurableSeq, next-1))
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
	for ctx.Err() == nil {
		if next > sh.p.ackedOf(sh.follower)+maxUnacked {
			if err := clock.Sleep(ctx, time.Millisecond); err != nil {
				return nil
			}
			continue
		}
		entries, err := sh.n.store.ReadLog(next, shipBatch)
		if err != nil {
			return fmt.Errorf("read log from %d: %w", next, err)
		}
		if len(entries) == 0 {
			wctx, cancel := context.WithTimeout(ctx, heartbeat)
			err := sh.n.store.WaitLog(wctx, next-1)
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
		msg := &wire.Entries{Entries: make([]*wire.LogEntry, len(entries))}
		for i, e := range entries {
			msg.Entries[i] = &wire.LogEntry{Seq: e.Seq, Epoch: e.Epoch, Slot: uint32(e.Slot), Key: e.Key, Value: e.Value, Delete: e.Delete}
		}
		if err := sh.send(&wire.PrimaryMessage{Body: &wire.PrimaryMessage_Entries{Entries: msg}}); err != nil {
			return err
		}
		if len(entries) > 0 {
			next = entries[len(entries)-1].Seq + 1
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
	slots := make([]int, sh.n.store.Slots())
	for i := range slots {
		slots[i] = i
	}
	chunk := &wire.SnapshotChunk{}
	records := 0
	flush := func() error {
		if len(chunk.Records) == 0 {
			return nil
		}
		err := sh.send(&wire.PrimaryMessage{Body: &wire.PrimaryMessage_SnapshotChunk{SnapshotChunk: chunk}})
		chunk = &wire.SnapshotChunk{}
		return err
	}
	seq, err := sh.n.store.Snapshot(ctx, slots, func(slot int, key, value []byte) error {
		chunk.Records = append(chunk.Records, &wire.SnapshotRecord{Slot: uint32(slot), Key: key, Value: value})
		records++
		if len(chunk.Records) >= snapshotChunk {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return 0, err
	}
	end := &wire.SnapshotEnd{Seq: seq}
	for _, e := range sh.n.store.Epochs() {
		end.Epochs = append(end.Epochs, &wire.EpochStart{Epoch: e.Epoch, StartSeq: e.StartSeq})
	}
	if err := sh.send(&wire.PrimaryMessage{Body: &wire.PrimaryMessage_SnapshotEnd{SnapshotEnd: end}}); err != nil {
		return 0, err
	}
	took := time.Since(start)
	sh.n.log.Info("snapshot sent", "follower", sh.follower, "records", records, "seq", seq, "took", took.Round(time.Millisecond),
		"records_per_sec", int(float64(records)/max(took.Seconds(), 1e-6)))
	return seq, nil
}

func (p *primary) ackedOf(id string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.followers[id]; f != nil {
		return f.acked
	}
	return 0
}
