package backup

import (
	"sync"
	"sync/atomic"
	"time"
)

// Progress is how far a backup or restore has got.
type Progress struct {
	Slots     int // slots done
	SlotTotal int
	Keys      int64
	Bytes     int64 // keys and values
	Elapsed   time.Duration
	Done      bool // the last report, once the run ended
}

// KeysPerSec and BytesPerSec are the average rates so far.
func (p Progress) KeysPerSec() float64 { return float64(p.Keys) / max(p.Elapsed.Seconds(), 1e-3) }

// BytesPerSec is the average byte rate so far.
func (p Progress) BytesPerSec() float64 { return float64(p.Bytes) / max(p.Elapsed.Seconds(), 1e-3) }

// progressInterval is how often a running backup or restore reports.
const progressInterval = 200 * time.Millisecond

// meter counts a run's work; its reporter calls report every
// progressInterval and once at the end.
type meter struct {
	start     time.Time
	slotTotal int
	slots     atomic.Int64
	keys      atomic.Int64
	bytes     atomic.Int64

	stop     chan struct{}
	stopOnce sync.Once
	done     sync.WaitGroup
}

func newMeter(slotTotal int, report func(Progress)) *meter {
	m := &meter{start: time.Now(), slotTotal: slotTotal, stop: make(chan struct{})}
	if report != nil {
		m.done.Add(1)
		go func() {
			defer m.done.Done()
			t := time.NewTicker(progressInterval)
			defer t.Stop()
			for {
				select {
				case <-m.stop:
					p := m.now()
					p.Done = true
					report(p)
					return
				case <-t.C:
					report(m.now())
				}
			}
		}()
	}
	return m
}

func (m *meter) add(keyBytes, valueBytes int) {
	m.keys.Add(1)
	m.bytes.Add(int64(keyBytes + valueBytes))
}

// addBatch counts keys written together, of size bytes of keys and values.
func (m *meter) addBatch(keys, size int) {
	m.keys.Add(int64(keys))
	m.bytes.Add(int64(size))
}

func (m *meter) now() Progress {
	return Progress{Slots: int(m.slots.Load()), SlotTotal: m.slotTotal, Keys: m.keys.Load(), Bytes: m.bytes.Load(), Elapsed: time.Since(m.start)}
}

// close stops the reporter after its last report and returns the totals;
// it may be called again.
func (m *meter) close() Progress {
	m.stopOnce.Do(func() { close(m.stop) })
	m.done.Wait()
	p := m.now()
	p.Done = true
	return p
}
