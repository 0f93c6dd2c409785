package datastore

import (
	"errors"
	"fmt"
	"testing"
)

// SnapshotCut names the seq before the first record, the same seq it
// returns; writes after it started are not in the copy.
func TestSnapshotCut(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	for i := range 10 {
		mustPut(t, s, 0, fmt.Sprintf("k%02d", i), "v")
	}
	var begun uint64
	records := 0
	seq, err := s.SnapshotCut(testCtx(t), []int{0}, func(seq uint64) error {
		if records > 0 {
			t.Error("begin after a record")
		}
		begun = seq
		mustPut(t, s, 0, "late", "v") // after the cut
		return nil
	}, func(slot int, key, value []byte) error {
		if string(key) == "late" {
			t.Error("a write after the cut is in the copy")
		}
		records++
		return nil
	})
	if err != nil || seq != 10 || begun != seq || records != 10 {
		t.Fatalf("SnapshotCut = %d, %v; begin saw %d; %d records", seq, err, begun, records)
	}
	stop := errors.New("stop")
	if _, err := s.SnapshotCut(testCtx(t), []int{0}, func(uint64) error { return stop }, func(int, []byte, []byte) error {
		t.Error("record after begin failed")
		return nil
	}); !errors.Is(err, stop) {
		t.Fatalf("failing begin: %v", err)
	}
}
