package datastore

import (
	"sync"
	"testing"
	"time"
)

// recorder is an Observer that adds up what it is told.
type recorder struct {
	mu                 sync.Mutex
	commits, committed int
	applies, applied   int
}

func (r *recorder) GroupCommit(entries int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commits++
	r.committed += entries
}

func (r *recorder) Applied(entries int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applies++
	r.applied += entries
}

// The observer hears of every entry twice: once made durable by a group
// commit, once applied; and the store reports its disk use.
func TestObserverAndDiskBytes(t *testing.T) {
	rec := &recorder{}
	s, _ := newStore(t, Options{Observer: rec})
	for i := range 10 {
		mustPut(t, s, i%16, "k", "v")
	}
	waitApplied(t, s)
	rec.mu.Lock()
	commits, committed, applies, applied := rec.commits, rec.committed, rec.applies, rec.applied
	rec.mu.Unlock()
	if commits == 0 || committed != 10 || applies == 0 || applied != 10 {
		t.Errorf("observer heard %d commits of %d entries and %d applies of %d entries, want 10 entries each", commits, committed, applies, applied)
	}
	file, wal, err := s.DiskBytes()
	if err != nil || file == 0 || wal == 0 {
		t.Errorf("DiskBytes = %d, %d, %v", file, wal, err)
	}
	st, err := s.Stats()
	if err != nil || st.FileBytes != file || st.WALBytes != wal {
		t.Errorf("Stats reports %d and %d bytes (%v), DiskBytes %d and %d", st.FileBytes, st.WALBytes, err, file, wal)
	}
}
