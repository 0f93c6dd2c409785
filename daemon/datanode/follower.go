package datanode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"storj.io/drpc/drpcconn"

	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/wire"
)

// followLoop keeps this node following primaryID of epoch: it connects,
// applies what the primary sends and acknowledges it, and reconnects after
// any failure, until ctx ends (a new role).
func (n *Node) followLoop(ctx context.Context, primaryID string, epoch uint64) {
	for ctx.Err() == nil {
		err := n.followOnce(ctx, primaryID, epoch)
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("replication stream ended; reconnecting", "primary", primaryID, "epoch", epoch, "err", err)
		_ = sleepCtx(ctx, 200*time.Millisecond)
	}
}

func (n *Node) followOnce(ctx context.Context, primaryID string, epoch uint64) error {
	addr, err := n.addrOf(ctx, primaryID)
	if err != nil {
		return err
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial primary %s at %s: %w", primaryID, addr, err)
	}
	conn := drpcconn.NewWithOptions(raw, drpcconn.Options{Manager: wire.ManagerOptions()})
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rpc, err := wire.NewDRPCDataClient(conn).Replicate(sctx)
	if err != nil {
		return fmt.Errorf("open replication stream: %w", err)
	}
	hello := &wire.Hello{Group: n.cfg.Group, NodeId: n.id, Epoch: epoch, LastSeq: n.store.LastSeq(), CommittedSeq: n.store.CommittedSeq(), DurableSeq: n.store.DurableSeq()}
	for _, e := range n.store.Epochs() {
		hello.Epochs = append(hello.Epochs, &wire.EpochStart{Epoch: e.Epoch, StartSeq: e.StartSeq})
	}
	if err := rpc.Send(&wire.FollowerMessage{Body: &wire.FollowerMessage_Hello{Hello: hello}}); err != nil {
		return err
	}
	n.log.Info("following primary", "primary", primaryID, "addr", addr, "epoch", epoch, "last_seq", hello.LastSeq)
	f := &applier{n: n, rpc: rpc, epoch: epoch, msgs: make(chan *wire.PrimaryMessage, 64)}
	f.heard.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	// A primary sends at least a heartbeat every 200 ms; a stream silent
	// for much longer is dead even if TCP does not know it yet.
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
				if time.Since(time.Unix(0, f.heard.Load())) > silentStream {
					n.log.Warn("replication stream silent; reconnecting", "primary", primaryID, "silent_for", silentStream)
					cancel()
					return
				}
			}
		}
	}()
	wg.Add(1)
	recvErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		defer close(f.msgs)
		recvErr <- f.receive(sctx)
	}()
	err = f.apply(sctx)
	cancel()
	wg.Wait()
	if err == nil {
		err = <-recvErr
	}
	return err
}

// addrOf finds a registered node's address.
func (n *Node) addrOf(ctx context.Context, id string) (string, error) {
	nodes, err := n.cfg.Cluster.Nodes(ctx)
	if err != nil {
		return "", err
	}
	for _, info := range nodes {
		if info.ID == id {
			return info.Addr, nil
		}
	}
	return "", fmt.Errorf("primary %s is not registered", id)
}

// applier applies one replication stream. A receiver goroutine reads
// messages so that the next ones arrive while the current batch is being
// made durable; the applier takes all that arrived as one append.
type applier struct {
	n        *Node
	rpc      wire.DRPCData_ReplicateClient
	epoch    uint64
	msgs     chan *wire.PrimaryMessage
	restorer *datastore.Restorer
	heard    atomic.Int64 // unix nanos of the last message received or applied
}

// silentStream is how long a follower waits without any message before it
// drops the stream and reconnects.
const silentStream = 10 * time.Second

func (f *applier) receive(ctx context.Context) error {
	for {
		msg, err := f.rpc.Recv()
		if err != nil {
			return err
		}
		f.heard.Store(time.Now().UnixNano())
		if msg.Epoch < f.epoch {
			// Fencing: never accept anything from an older epoch.
			return fmt.Errorf("refusing stream of epoch %d: the group is at epoch %d", msg.Epoch, f.epoch)
		}
		select {
		case f.msgs <- msg:
		case <-ctx.Done():
			return nil
		}
	}
}

func (f *applier) apply(ctx context.Context) error {
	defer func() {
		if f.restorer != nil {
			f.restorer.Abort()
		}
	}()
	var batch []*wire.PrimaryMessage
	var entries []datastore.LogEntry
	for msg := range f.msgs {
		batch = append(batch[:0], msg)
	drain:
		for len(batch) < 64 {
			select {
			case more, ok := <-f.msgs:
				if !ok {
					break drain
				}
				batch = append(batch, more)
			default:
				break drain
			}
		}
		entries = entries[:0]
		// The watermark is taken from entry messages only: one that comes
		// with a truncation or a snapshot describes the log after it, and
		// must not make this node's diverged entries visible first.
		var committed uint64
		for _, m := range batch {
			if m.GetEntries() != nil {
				committed = m.Committed
				entries = f.collect(m, entries)
				continue
			}
			// A control message applies after the entries before it.
			if err := f.appendEntries(ctx, entries, committed); err != nil {
				return err
			}
			entries = entries[:0]
			if err := f.control(ctx, m); err != nil {
				return err
			}
		}
		if err := f.appendEntries(ctx, entries, committed); err != nil {
			return err
		}
		// Progress here counts as life too: while a large restore is
		// applied, the receiver waits for room and hears nothing.
		f.heard.Store(time.Now().UnixNano())
	}
	return nil
}

func (f *applier) collect(msg *wire.PrimaryMessage, entries []datastore.LogEntry) []datastore.LogEntry {
	for _, e := range msg.GetEntries().GetEntries() {
		entries = append(entries, datastore.LogEntry{Seq: e.Seq, Epoch: e.Epoch, Slot: int(e.Slot), Key: e.Key, Value: e.Value, Delete: e.Delete})
	}
	return entries
}

// appendEntries makes entries durable, acknowledges them, and makes
// visible what the primary has committed.
func (f *applier) appendEntries(ctx context.Context, entries []datastore.LogEntry, committed uint64) error {
	store := f.n.store
	if len(entries) > 0 {
		if err := store.ApplyLog(ctx, entries); err != nil {
			return fmt.Errorf("append %d entries from %d: %w", len(entries), entries[0].Seq, err)
		}
		if err := f.ack(store.DurableSeq()); err != nil {
			return err
		}
	}
	if f.restorer == nil {
		store.SetCommitted(min(committed, store.DurableSeq()))
	}
	return nil
}

func (f *applier) ack(seq uint64) error {
	return f.rpc.Send(&wire.FollowerMessage{Body: &wire.FollowerMessage_Ack{Ack: &wire.Ack{DurableSeq: seq}}})
}

// control handles the messages that are not log entries.
func (f *applier) control(ctx context.Context, msg *wire.PrimaryMessage) error {
	store := f.n.store
	switch body := msg.Body.(type) {
	case *wire.PrimaryMessage_Truncate:
		f.n.log.Info("truncating entries the new primary does not have", "after", body.Truncate.After, "last_seq", store.LastSeq())
		if err := store.TruncateAfter(ctx, body.Truncate.After); err != nil {
			return fmt.Errorf("truncate after %d: %w", body.Truncate.After, err)
		}
		return f.ack(store.DurableSeq())
	case *wire.PrimaryMessage_SnapshotBegin:
		f.n.log.Info("receiving snapshot from the primary")
		r, err := store.Restore(ctx)
		if err != nil {
			return fmt.Errorf("start restore: %w", err)
		}
		f.restorer = r
	case *wire.PrimaryMessage_SnapshotChunk:
		if f.restorer == nil {
			return errors.New("snapshot chunk without a snapshot begin")
		}
		for _, r := range body.SnapshotChunk.Records {
			if err := f.restorer.Put(int(r.Slot), r.Key, r.Value); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
		}
	case *wire.PrimaryMessage_SnapshotEnd:
		if f.restorer == nil {
			return errors.New("snapshot end without a snapshot begin")
		}
		epochs := make([]datastore.EpochStart, len(body.SnapshotEnd.Epochs))
		for i, e := range body.SnapshotEnd.Epochs {
			epochs[i] = datastore.EpochStart{Epoch: e.Epoch, StartSeq: e.StartSeq}
		}
		err := f.restorer.Finish(body.SnapshotEnd.Seq, epochs)
		f.restorer = nil
		if err != nil {
			return fmt.Errorf("finish restore at %d: %w", body.SnapshotEnd.Seq, err)
		}
		f.n.log.Info("snapshot restored", "seq", body.SnapshotEnd.Seq)
		return f.ack(store.DurableSeq())
	}
	return nil
}
