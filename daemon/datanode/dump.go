package datanode

import (
	"context"
	"slices"
	"time"

	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/wire"
)

// tableWait bounds how long Dump waits for the node's slot table to reach
// the backup's.
const tableWait = 5 * time.Second

// Dump streams one consistent copy of the requested slots for a backup:
// every slot is read from one read transaction of the store, with the
// committed writes not applied yet merged in, cut at the same log
// position, which the first message names (docs/backups.md). Any in-sync
// member serves it, so a backup need not load the primary. Records leave
// in chunks of about shipBytes, each sent from inside the snapshot
// callback: a slow reader slows the copy down instead of making this node
// hold a whole slot in memory.
func (s *service) Dump(req *wire.DumpRequest, rpc wire.DRPCData_DumpStream) error {
	n := s.n
	ctx := rpc.Context()
	// Ownership is judged from a table at least as new as the one the
	// backup read: an older copy may still name this group the owner of a
	// slot that moved away, and so serve a copy missing the new owner's
	// writes.
	st := n.state.Load()
	if st.table != nil && st.table.Version < req.TableVersion {
		wctx, cancel := context.WithTimeout(ctx, tableWait)
		for st.table.Version < req.TableVersion && clock.Sleep(wctx, 10*time.Millisecond) == nil {
			st = n.state.Load()
		}
		cancel()
		if st.table.Version < req.TableVersion {
			return wire.Errorf(wire.Code_STALE_EPOCH, "dump: node %s has slot table v%d, older than the backup's v%d", n.id, st.table.Version, req.TableVersion)
		}
	}
	switch {
	case st.storeErr != nil:
		return wire.Errorf(wire.Code_UNAVAILABLE, "dump: node %s: %s", n.id, storeState(st))
	case !st.sessionOK || st.group == nil:
		return wire.Errorf(wire.Code_UNAVAILABLE, "dump: node %s does not know its group's state yet", n.id)
	case !st.isPrimary() && !slices.Contains(st.group.ISR, n.id):
		return wire.Errorf(wire.Code_UNAVAILABLE, "dump: node %s is not in the in-sync set of group %s", n.id, n.cfg.Group)
	}
	slots := make([]int, len(req.Slots))
	for i, slot := range req.Slots {
		if owner := st.table.Owner(int(slot)); owner != n.cfg.Group {
			return wire.Errorf(wire.Code_MOVED, "dump: slot %d is owned by group %q, not %s (slot table v%d)", slot, owner, n.cfg.Group, st.table.Version)
		}
		slots[i] = int(slot)
	}
	store := n.store()
	// A secondary learns the commit point from its primary's next message:
	// wait until it covers what the backup must include.
	for store.CommittedSeq() < req.MinSeq {
		if err := clock.Sleep(ctx, 10*time.Millisecond); err != nil {
			return wire.Errorf(wire.Code_UNAVAILABLE, "dump: node %s waited for seq %d to commit (at %d): %v", n.id, req.MinSeq, store.CommittedSeq(), err)
		}
	}
	start := time.Now()
	var cut *wire.DumpCut
	records := 0
	chunks := chunker{send: func(chunk *wire.SnapshotChunk, _ int) error {
		return rpc.Send(&wire.DumpChunk{Records: chunk.Records})
	}}
	begin := func(seq uint64) error {
		cut = &wire.DumpCut{Epoch: epochAt(store.Epochs(), seq), Seq: seq}
		return rpc.Send(&wire.DumpChunk{Cut: cut})
	}
	// Unlike the backup writing it (backup.Run), the copy runs at normal
	// priority: it costs a member little CPU (about 0.05 s per 50,000
	// keys), lowering it gained the clients nothing measurable
	// (docs/backups.md, Figures), and a low-priority thread that Go hands
	// a processor on each wake-up may keep it while it waits for a core,
	// on a replica the writes wait for.
	_, err := store.SnapshotCut(ctx, slots, begin, func(slot int, key, value []byte) error {
		records++
		return chunks.add(slot, key, value)
	})
	if err == nil {
		err = chunks.flush()
	}
	if err == nil {
		err = rpc.Send(&wire.DumpChunk{End: true})
	}
	if err != nil {
		return wire.Errorf(codeOf(err), "dump: node %s: %v", n.id, err)
	}
	n.log.Info("dump sent", "slots", len(slots), "records", records, "epoch", cut.Epoch, "seq", cut.Seq,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}
