package datastore

import (
	"context"
	"fmt"
	"slices"
)

// EpochStart is one entry of the persisted epoch map: log entries written in
// Epoch begin at sequence number StartSeq. An epoch whose StartSeq equals
// the next entry's StartSeq holds no entries (the node saw the epoch but
// nothing was written in it). The zero value is epoch 0 starting at seq 0.
type EpochStart struct {
	Epoch    uint64
	StartSeq uint64
}

// withEntryEpoch returns the epoch map after a log entry of epoch e was
// appended at seq. The map is shared with readers, so it is copied on change.
//
// Epochs above e that start at or before seq were recorded by SetEpoch while
// older entries were still arriving (a follower fenced to the new epoch
// catching up on the old one); they now start after seq.
func withEntryEpoch(epochs []EpochStart, seq, e uint64) []EpochStart {
	if n := len(epochs); n > 0 && epochs[n-1].Epoch == e {
		return epochs
	}
	out := make([]EpochStart, 0, len(epochs)+1)
	inserted := false
	for _, x := range epochs {
		if x.Epoch > e {
			if !inserted {
				out = append(out, EpochStart{Epoch: e, StartSeq: seq})
				inserted = true
			}
			x.StartSeq = max(x.StartSeq, seq+1)
		} else if x.Epoch == e {
			inserted = true
		}
		out = append(out, x)
	}
	if !inserted {
		out = append(out, EpochStart{Epoch: e, StartSeq: seq})
	}
	return out
}

// Epoch returns the highest epoch this store has seen, through SetEpoch or
// in entries given to ApplyLog; 0 for a new store. Write stamps its entries
// with it.
func (s *Store) Epoch() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.epoch
}

// Epochs returns a copy of the persisted epoch map, ordered by epoch; empty
// for a new store.
func (s *Store) Epochs() []EpochStart {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.epochs)
}

// EpochEnd answers a following node's question "where does my epoch end in
// your log?" (docs/replication.md, "Catch-up"; Kafka's OffsetsForLeaderEpoch): for the
// largest epoch in the map that is <= epoch it returns that epoch and the
// sequence number just past its last entry, that is the start of the next
// epoch in the map or LastSeq()+1. ok is false when the map holds no such
// epoch.
func (s *Store) EpochEnd(epoch uint64) (found, endSeq uint64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, exact := slices.BinarySearchFunc(s.epochs, epoch, func(x EpochStart, e uint64) int {
		switch {
		case x.Epoch < e:
			return -1
		case x.Epoch > e:
			return 1
		}
		return 0
	})
	if exact {
		i++
	}
	if i == 0 {
		return 0, 0, false
	}
	found = s.epochs[i-1].Epoch
	if i < len(s.epochs) {
		return found, s.epochs[i].StartSeq, true
	}
	return found, s.last + 1, true
}

// SetEpoch persists epoch as the store's current epoch and records in the
// epoch map that it starts at LastSeq()+1, ordered with concurrent writes
// (the writes queued before it carry the old epoch, those after the new
// one). A primary calls it when it takes over, before its first write; a
// follower calls it to fence older primaries. Setting the current epoch
// again is a no-op.
//
// The change is an epoch-marker record in the write-ahead log, queued with
// the writes, so its order relative to them is exact; SetEpoch returns once
// it is fsynced. The applier persists the epoch map in the bbolt file.
//
// Errors: ErrStaleEpoch if epoch is lower than the current one, ErrClosed,
// ErrRestoring, ErrFailed, ctx.Err() if ctx ends first (the change may
// still be made).
func (s *Store) SetEpoch(ctx context.Context, epoch uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{kind: kindEpoch, epoch: epoch}
	if _, err := s.submit(ctx, r); err != nil {
		return fmt.Errorf("set epoch %d: %w", epoch, err)
	}
	return nil
}

// logState is the position and epoch state of the log. The committer
// builds the next one in a copy and publishes it under Store.mu; epochs is
// replaced, never edited in place, so readers may keep the old slice.
type logState struct {
	last     uint64 // newest seq written to the log, maybe not yet fsynced
	epoch    uint64 // highest epoch seen
	logEpoch uint64 // epoch of the entry at last
	epochs   []EpochStart
}

// markEpoch records that epoch starts after seq, if it is new.
func (st *logState) markEpoch(epoch, seq uint64) bool {
	if epoch <= st.epoch {
		return false
	}
	st.epochs = append(st.epochs[:len(st.epochs):len(st.epochs)], EpochStart{Epoch: epoch, StartSeq: seq + 1})
	st.epoch = epoch
	return true
}

// appendEntry advances the state over a data entry.
func (st *logState) appendEntry(seq, epoch uint64) {
	st.epochs = withEntryEpoch(st.epochs, seq, epoch)
	st.epoch = max(st.epoch, epoch)
	st.logEpoch = epoch
	st.last = seq
}

// clampEpochs returns the map with no epoch starting after next (the seq
// the next entry will get): epochs that started after entries which are
// gone (truncated, or torn off by a crash) become empty epochs at the end.
func clampEpochs(epochs []EpochStart, next uint64) []EpochStart {
	if len(epochs) == 0 || epochs[len(epochs)-1].StartSeq <= next {
		return epochs
	}
	out := slices.Clone(epochs)
	for i := range out {
		out[i].StartSeq = min(out[i].StartSeq, next)
	}
	return out
}

// epochAt returns the epoch of the entry at seq according to the map: the
// last epoch starting at or before it; 0 for seq 0 or an empty map.
func epochAt(epochs []EpochStart, seq uint64) uint64 {
	var e uint64
	for _, x := range epochs {
		if x.StartSeq > seq {
			break
		}
		e = x.Epoch
	}
	return e
}
