package datastore

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
)

func TestSnapshot(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	for i := range 20 {
		mustPut(t, s, i%4, fmt.Sprintf("k%02d", i), fmt.Sprint(i))
	}
	var got []string
	seq, err := s.Snapshot(testCtx(t), []int{3, 1}, func(slot int, key, value []byte) error {
		got = append(got, fmt.Sprintf("%d/%s=%s", slot, key, value))
		return nil
	})
	if err != nil || seq != 20 {
		t.Fatalf("snapshot = %d, %v", seq, err)
	}
	want := []string{"3/k03=3", "3/k07=7", "3/k11=11", "3/k15=15", "3/k19=19", "1/k01=1", "1/k05=5", "1/k09=9", "1/k13=13", "1/k17=17"}
	if !slices.Equal(got, want) {
		t.Fatalf("snapshot saw %v", got)
	}
	stop := errors.New("stop")
	if _, err := s.Snapshot(testCtx(t), []int{0}, func(int, []byte, []byte) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("snapshot with failing fn: %v", err)
	}
}

func TestSnapshotRestore(t *testing.T) {
	primary, _ := newStore(t, Options{NoSync: true})
	follower, fdir := newManual(t, Options{NoSync: true})
	ctx := testCtx(t)
	mustPut(t, follower, 0, "stale", "x") // discarded by the restore
	if err := primary.SetEpoch(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		mustPut(t, primary, i%16, fmt.Sprintf("k%02d", i), fmt.Sprint(i))
	}
	r, err := follower.Restore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := follower.Write(ctx, []Mutation{{Slot: 1, Key: []byte("x")}}); !errors.Is(err, ErrRestoring) {
		t.Fatalf("write during restore: %v", err)
	}
	if _, err := follower.Restore(ctx); !errors.Is(err, ErrRestoring) {
		t.Fatalf("second restore: %v", err)
	}
	all := make([]int, 16)
	for i := range all {
		all[i] = i
	}
	seq, err := primary.Snapshot(ctx, all, func(slot int, key, value []byte) error { return r.Put(slot, key, value) })
	if err != nil || seq != 30 {
		t.Fatalf("snapshot = %d, %v", seq, err)
	}
	if err := r.Finish(seq, primary.Epochs()); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(0, []byte("late"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after finish: %v", err)
	}
	if follower.LastSeq() != 30 || follower.CommittedSeq() != 30 || follower.AppliedSeq() != 30 {
		t.Fatalf("follower at %d/%d/%d", follower.LastSeq(), follower.CommittedSeq(), follower.AppliedSeq())
	}
	if _, err := follower.ReadLog(30, Limit{}); !errors.Is(err, ErrLogTrimmed) {
		t.Fatalf("read log before the restore point: %v", err)
	}
	// The rest of the primary's log continues it.
	mustPut(t, primary, 5, "after", "snap")
	entries, err := primary.ReadLog(seq+1, Limit{})
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.ApplyLog(ctx, entries); err != nil {
		t.Fatal(err)
	}
	follower.SetCommitted(follower.LastSeq())
	waitApplied(t, primary)
	if a, b := dump(t, primary), dump(t, follower); !reflect.DeepEqual(a, b) {
		t.Fatalf("data differs:\n%v\n%v", a, b)
	}
	if !slices.Equal(follower.Epochs(), primary.Epochs()) || follower.Epoch() != 3 {
		t.Fatalf("epochs %v vs %v", follower.Epochs(), primary.Epochs())
	}
	if err := follower.Close(); err != nil {
		t.Fatal(err)
	}
	follower = openManual(t, fdir, Options{})
	if follower.LastSeq() != 31 {
		t.Fatalf("after reopen last %d", follower.LastSeq())
	}
	follower.SetCommitted(31)
	if a, b := dump(t, primary), dump(t, follower); !reflect.DeepEqual(a, b) {
		t.Fatal("data differs after reopen")
	}
}

func TestRestoreAbort(t *testing.T) {
	s, _ := newStore(t, Options{NoSync: true})
	ctx := testCtx(t)
	mustPut(t, s, 0, "a", "1")
	r, err := s.Restore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Put(0, []byte("b"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := r.Abort(); err != nil {
		t.Fatal(err)
	}
	if s.LastSeq() != 0 || len(dump(t, s)) != 0 {
		t.Fatalf("after abort: last %d, data %v", s.LastSeq(), dump(t, s))
	}
	if seq := mustPut(t, s, 0, "c", "3"); seq != 1 {
		t.Fatalf("first seq after abort %d", seq)
	}
}
