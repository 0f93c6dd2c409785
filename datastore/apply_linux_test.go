package datastore

import (
	"syscall"
	"testing"

	"github.com/thunderyurts/thunderyurts/internal/sysproc"
)

// TestBackupLeavesApplyInBackground: the apply round a backup's copy
// (SnapshotCut) waits for runs at low priority, and the one a new
// secondary's copy (Snapshot) waits for at normal priority.
func TestBackupLeavesApplyInBackground(t *testing.T) {
	nices := make(chan int, 8)
	s, _ := newStore(t, Options{NoSync: true, hooks: hooks{beforeApply: func() error {
		prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
		if err != nil {
			return err
		}
		nices <- 20 - prio
		return nil
	}}})
	base, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	if 20-base >= sysproc.BackgroundNice {
		t.Skipf("the test runs at nice %d already", 20-base)
	}
	for _, c := range []struct {
		name string
		copy func() error
		want int
	}{
		{"backup", func() error {
			_, err := s.SnapshotCut(testCtx(t), []int{1}, func(uint64) error { return nil }, func(int, []byte, []byte) error { return nil })
			return err
		}, sysproc.BackgroundNice},
		{"new secondary", func() error {
			_, err := s.Snapshot(testCtx(t), []int{1}, func(int, []byte, []byte) error { return nil })
			return err
		}, 20 - base},
	} {
		mustPut(t, s, 1, "k-"+c.name, "v") // left for the next round, seconds away
		if err := c.copy(); err != nil {
			t.Fatal(err)
		}
		if got := <-nices; got != c.want {
			t.Errorf("%s: the round the copy waited for ran at nice %d, want %d", c.name, got, c.want)
		}
	}
}
