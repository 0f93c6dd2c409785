package sysproc

import (
	"runtime"
	"sync"
	"time"
)

// BackgroundNice is the nice value of the threads Background and
// GoBackground run their work on (CFS weight 110 against 1024 at nice 0).
const BackgroundNice = 10

// Background runs fn on an OS thread of its own at nice BackgroundNice and
// returns its result. It is for work that may take the cores for a while
// but that no client waits on (a data store's apply transactions, a
// backup's copy), so that on a busy machine the work clients wait on goes
// first, as a compaction thread yields in RocksDB. (SCHED_IDLE measured no
// better, and a thread starved that hard delays the Go runtime's
// stop-the-world phases: one took 10 ms.) The threads run nothing but
// background work, and one idle for 5 s ends still locked, so Go ends the
// thread with it: the priority never reaches other work (raising it again
// would need privileges). Goroutines fn starts run at normal priority.
// Setting the priority is best effort, and does nothing off Linux.
func Background(fn func() error) error {
	done := make(chan error, 1)
	GoBackground(func() { done <- fn() })
	return <-done
}

// GoBackground starts fn in a goroutine of its own on an OS thread at nice
// BackgroundNice, as Background does, without waiting for it: the caller
// owns the goroutine and learns that fn ended from fn itself. An idle
// background thread takes fn if there is one: a backup runs a goroutine
// per slot file, and a new thread for each (created, lowered, ended) took
// as long as writing the files into tmpfs.
func GoBackground(fn func()) {
	idle.mu.Lock()
	if n := len(idle.workers); n > 0 {
		w := idle.workers[n-1]
		idle.workers = idle.workers[:n-1]
		idle.mu.Unlock()
		w <- fn
		return
	}
	idle.mu.Unlock()
	go background(fn)
}

// maxIdle bounds the background threads kept waiting.
const maxIdle = 64

// idle holds the background threads waiting for work, each as the channel
// it takes its next fn from, the latest last, and how long one waits
// before it ends (a variable for tests).
var idle = struct {
	mu      sync.Mutex
	workers []chan func()
	timeout time.Duration
}{timeout: 5 * time.Second}

// background runs fn, then the work GoBackground hands it, on its locked
// thread, until it has been idle for idle.timeout. The pool owns it: it
// ends by itself.
func background(fn func()) {
	runtime.LockOSThread()
	lowerThreadPriority(BackgroundNice)
	// Buffered: GoBackground hands work over without waiting for this
	// low-priority thread to be scheduled.
	next := make(chan func(), 1)
	var timer *time.Timer
	for {
		fn()
		idle.mu.Lock()
		if len(idle.workers) >= maxIdle {
			idle.mu.Unlock()
			return
		}
		idle.workers = append(idle.workers, next)
		timeout := idle.timeout
		idle.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(timeout)
		} else {
			timer.Reset(timeout)
		}
		select {
		case fn = <-next:
			continue
		case <-timer.C:
		}
		idle.mu.Lock()
		for i, w := range idle.workers {
			if w == next {
				idle.workers = append(idle.workers[:i], idle.workers[i+1:]...)
				idle.mu.Unlock()
				return
			}
		}
		idle.mu.Unlock()
		fn = <-next // taken off the list as the timer fired: its work is on the way
	}
}
