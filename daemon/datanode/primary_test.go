package datanode

import (
	"context"
	"fmt"
	"testing"

	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/wire"
)

// logWithEpochs returns a store whose log holds seqs 1-5 of epoch 1 and
// 6-8 of epoch 2.
func logWithEpochs(t *testing.T) *datastore.Store {
	t.Helper()
	ctx := context.Background()
	s, err := datastore.Open(t.TempDir(), datastore.Options{Slots: 4, NoSync: true, AutoCommit: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, step := range []struct {
		epoch uint64
		n     int
	}{{1, 5}, {2, 3}} {
		if err := s.SetEpoch(ctx, step.epoch); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < step.n; i++ {
			if _, err := s.Write(ctx, []datastore.Mutation{{Slot: 0, Key: []byte(fmt.Sprint(i)), Value: []byte("v")}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return s
}

func TestStartPoint(t *testing.T) {
	s := logWithEpochs(t)
	epochs := func(pairs ...uint64) []*wire.EpochStart {
		var out []*wire.EpochStart
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, &wire.EpochStart{Epoch: pairs[i], StartSeq: pairs[i+1]})
		}
		return out
	}
	cases := []struct {
		name               string
		hello              *wire.Hello
		next               uint64
		truncate, snapshot bool
	}{
		{"empty follower", &wire.Hello{}, 1, false, false},
		{"same log", &wire.Hello{LastSeq: 8, Epochs: epochs(1, 1, 2, 6)}, 9, false, false},
		{"behind in the first epoch", &wire.Hello{LastSeq: 3, Epochs: epochs(1, 1)}, 4, false, false},
		// An old primary of epoch 1 wrote 6 and 7 that were never acknowledged.
		{"diverged in epoch 1", &wire.Hello{LastSeq: 7, Epochs: epochs(1, 1)}, 6, true, false},
		// A follower of a short-lived epoch 3 this log never saw.
		{"epoch unknown here", &wire.Hello{LastSeq: 9, Epochs: epochs(1, 1, 3, 6)}, 6, true, false},
		// Its committed entries would have to go: only a snapshot fixes it.
		{"diverged below committed", &wire.Hello{LastSeq: 7, CommittedSeq: 7, Epochs: epochs(1, 1)}, 0, false, true},
	}
	for _, tc := range cases {
		next, truncate, snapshot := startPoint(s, tc.hello)
		if next != tc.next || truncate != tc.truncate || snapshot != tc.snapshot {
			t.Errorf("%s: startPoint = %d, truncate %v, snapshot %v; want %d, %v, %v", tc.name, next, truncate, snapshot, tc.next, tc.truncate, tc.snapshot)
		}
	}
}
