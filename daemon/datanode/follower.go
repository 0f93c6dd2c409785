package datanode

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/wire"
)

// followLoop keeps this node following primaryID of epoch: it connects,
// applies what the primary sends and acknowledges it, and reconnects after
// any failure, until ctx ends (a new role).
func (n *Node) followLoop(ctx context.Context, primaryID string, epoch uint64) {
	n.dedupe.follow()
	for ctx.Err() == nil {
		err := n.followOnce(ctx, primaryID, epoch)
		// A failed store ends following for good: the role manager
		// reopens it (recoverStore) and follows again.
		n.noteStoreErr(err)
		if ctx.Err() != nil || errors.Is(err, datastore.ErrFailed) {
			return
		}
		n.log.Warn("replication stream ended; reconnecting", "primary", primaryID, "epoch", epoch, "err", err)
		_ = clock.Sleep(ctx, 200*time.Millisecond)
	}
}

func (n *Node) followOnce(ctx context.Context, primaryID string, epoch uint64) error {
	addr, err := n.addrOf(ctx, primaryID)
	if err != nil {
		return err
	}
	conn, err := wire.Dial(ctx, addr, n.dialOptions())
	if err != nil {
		return fmt.Errorf("primary %s: %w", primaryID, err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rpc, err := wire.NewDRPCDataClient(conn).Replicate(sctx)
	if err != nil {
		return fmt.Errorf("open replication stream: %w", err)
	}
	hello := &wire.Hello{Group: n.cfg.Group, NodeId: n.id, Epoch: epoch, LastSeq: n.store().LastSeq(), CommittedSeq: n.store().CommittedSeq(), DurableSeq: n.store().DurableSeq()}
	for _, e := range n.store().Epochs() {
		hello.Epochs = append(hello.Epochs, &wire.EpochStart{Epoch: e.Epoch, StartSeq: e.StartSeq})
	}
	if err := rpc.Send(&wire.FollowerMessage{Body: &wire.FollowerMessage_Hello{Hello: hello}}); err != nil {
		return err
	}
	n.log.Info("following primary", "primary", primaryID, "addr", addr, "epoch", epoch, "last_seq", hello.LastSeq)
	f := &receiver{n: n, rpc: rpc, epoch: epoch, cancel: cancel, progressed: make(chan struct{}, 1)}
	f.heard.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); f.watchSilence(sctx, primaryID) }()
	go func() { defer wg.Done(); f.acknowledge(sctx) }()
	err = f.receive(sctx)
	cancel()
	wg.Wait()
	if failed := f.failed(); failed != nil {
		err = failed
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

// receiver applies one replication stream. The receiving goroutine queues
// each batch of entries for the store's group commit without waiting for
// it, so entries that arrive while the previous ones are being synced join
// the next fdatasync at once; a second goroutine acknowledges whatever has
// become durable by the time it runs, in one message.
type receiver struct {
	n        *Node
	rpc      wire.DRPCData_ReplicateClient
	epoch    uint64
	cancel   context.CancelFunc
	restorer *datastore.Restorer
	heard    atomic.Int64 // unix nanos of the last message received or applied

	inflight   sync.WaitGroup       // queued appends not yet durable
	progressed chan struct{}        // an append finished: time to acknowledge
	entries    []datastore.LogEntry // appendEntries' buffer
	// committed is the primary's watermark from the newest entries message.
	// Only entries messages set it: one that comes with a truncation or a
	// snapshot describes the log after it, and must not make this node's
	// diverged entries visible first.
	committed atomic.Uint64
	// appended is the end of what this stream has made durable here (or
	// what a truncation or snapshot left). The store's DurableSeq may be
	// further on with entries the new primary does not have, whose append
	// in this stream is about to fail; they must never be acknowledged or
	// committed.
	appended atomic.Uint64
	failMu   sync.Mutex
	failErr  error
}

// silentStream is how long a follower waits without any message before it
// drops the stream and reconnects.
const silentStream = 10 * time.Second

// watchSilence drops the stream when the primary has been silent for too
// long: a primary sends at least a heartbeat every 200 ms, so a silent
// stream is dead even if TCP does not know it yet.
func (f *receiver) watchSilence(ctx context.Context, primaryID string) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if time.Since(time.Unix(0, f.heard.Load())) > silentStream {
				f.fail(fmt.Errorf("primary %s silent for %s", primaryID, silentStream))
				return
			}
		}
	}
}

// fail records the first error of an asynchronous append and ends the stream.
func (f *receiver) fail(err error) {
	f.failMu.Lock()
	if f.failErr == nil {
		f.failErr = err
	}
	f.failMu.Unlock()
	f.cancel()
}

func (f *receiver) failed() error {
	f.failMu.Lock()
	defer f.failMu.Unlock()
	return f.failErr
}

// receive reads and applies the primary's messages in order until the
// stream ends. Before a control message (truncation, snapshot) it waits for
// the appends queued before it.
func (f *receiver) receive(ctx context.Context) error {
	defer func() {
		f.inflight.Wait()
		if f.restorer != nil {
			f.restorer.Abort()
		}
	}()
	// The store copies what it keeps of a message's entries before
	// appendEntries returns, so each message is decoded into the last one's
	// memory.
	msg := &wire.PrimaryMessage{}
	for {
		err := wire.RecvEntriesInto(f.rpc, msg)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return wire.FromRPC(err)
		}
		f.heard.Store(time.Now().UnixNano())
		if msg.Epoch < f.epoch {
			// Fencing: never accept anything from an older epoch.
			return fmt.Errorf("refusing stream of epoch %d: the group is at epoch %d", msg.Epoch, f.epoch)
		}
		if body := msg.GetEntries(); body != nil {
			if err := f.appendEntries(ctx, body.Entries, msg.Committed); err != nil {
				return err
			}
			continue
		}
		f.inflight.Wait()
		if err := f.failed(); err != nil {
			return err
		}
		if err := f.control(ctx, msg); err != nil {
			return err
		}
	}
}

// appendEntries queues entries for the group commit and records the
// primary's watermark; an empty message only carries the watermark.
func (f *receiver) appendEntries(ctx context.Context, in []*wire.LogEntry, committed uint64) error {
	store := f.n.store()
	f.committed.Store(committed)
	// Also before queueing: the queueing may wait for the store to apply
	// its log to bbolt, which it does only for what is committed.
	f.commit()
	if len(in) == 0 {
		return nil
	}
	if f.restorer != nil {
		return errors.New("log entries during a snapshot")
	}
	// The store copies the entries, so one buffer serves every message;
	// what the append's outcome needs is kept apart, in its own.
	entries := f.entries[:0]
	tags := make([]datastore.Tag, len(in))
	for i, e := range in {
		entries = append(entries, storeLogEntry(e))
		tags[i] = entries[i].Tag
	}
	first := entries[0].Seq
	f.entries = entries
	defer clear(entries) // the store's copy is made: let the message go
	f.inflight.Add(1)
	err := store.ApplyLogAsync(ctx, entries, func(last uint64, err error) {
		defer f.inflight.Done()
		if err != nil {
			f.fail(fmt.Errorf("append %d entries from %d: %w", len(tags), first, err))
			return
		}
		f.appended.Store(last)
		select {
		case f.progressed <- struct{}{}:
		default: // an acknowledgement is due already
		}
		// Yielding lets acknowledge send before the tags go in, which
		// took ~30µs per message on the way to the writers' answer: only a
		// primary looks tags up, and this node leads only after every
		// append of this stream has returned (receive waits for them).
		// The store's later callbacks, if any, wait as long; a group
		// commit of a follower seldom holds more than one message.
		runtime.Gosched()
		f.n.dedupe.appended(first, tags)
	})
	if err != nil {
		f.inflight.Done()
		return fmt.Errorf("append %d entries from %d: %w", len(tags), first, err)
	}
	return nil
}

// acknowledge tells the primary how far this node's log is durable each
// time appends finish, and makes visible what the primary has committed.
func (f *receiver) acknowledge(ctx context.Context) {
	var acked uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.progressed:
		}
		if appended := f.appended.Load(); appended > acked {
			if err := f.ack(appended); err != nil {
				f.fail(err)
				return
			}
			acked = appended
		}
		f.commit()
		// Progress counts as life too: a long append is not silence.
		f.heard.Store(time.Now().UnixNano())
	}
}

// commit makes visible what the primary has committed and this stream has
// appended. The watermark is read before the position: a watermark from
// after a truncation then never meets a position from before it.
func (f *receiver) commit() {
	committed := f.committed.Load()
	appended := f.appended.Load()
	if f.failed() == nil {
		f.n.store().SetCommitted(min(committed, appended))
	}
}

func (f *receiver) ack(seq uint64) error {
	return f.rpc.Send(&wire.FollowerMessage{Body: &wire.FollowerMessage_Ack{Ack: &wire.Ack{DurableSeq: seq}}})
}

// control handles the messages that are not log entries.
func (f *receiver) control(ctx context.Context, msg *wire.PrimaryMessage) error {
	store := f.n.store()
	switch body := msg.Body.(type) {
	case *wire.PrimaryMessage_Truncate:
		f.n.log.Info("truncating entries the new primary does not have", "after", body.Truncate.After, "last_seq", store.LastSeq())
		if err := store.TruncateAfter(ctx, body.Truncate.After); err != nil {
			return fmt.Errorf("truncate after %d: %w", body.Truncate.After, err)
		}
		f.appended.Store(store.DurableSeq())
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
		tags := make([]datastore.TagSeq, len(body.SnapshotEnd.Tags))
		for i, t := range body.SnapshotEnd.Tags {
			tags[i] = datastore.TagSeq{Tag: datastore.Tag{Client: t.ClientId, Seq: t.ClientSeq}, Seq: t.Seq}
		}
		// The store keeps the tags with the restore, as the log will not
		// hold their entries; the table gets what it kept.
		f.restorer.SetTags(tags)
		err := f.restorer.Finish(body.SnapshotEnd.Seq, epochs)
		f.restorer = nil
		if err != nil {
			return fmt.Errorf("finish restore at %d: %w", body.SnapshotEnd.Seq, err)
		}
		f.n.dedupe.install(store.RestoredTags())
		f.n.log.Info("snapshot restored", "seq", body.SnapshotEnd.Seq, "tags", len(store.RestoredTags()))
		f.appended.Store(store.DurableSeq())
		return f.ack(store.DurableSeq())
	}
	return nil
}
