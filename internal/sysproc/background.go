package sysproc

import "runtime"

// BackgroundNice is the nice value of the threads Background and
// GoBackground run their work on (CFS weight 110 against 1024 at nice 0).
const BackgroundNice = 10

// Background runs fn on an OS thread of its own at nice BackgroundNice and
// returns its result. It is for work that may take the cores for a while
// but that no client waits on (a data store's apply transactions, a
// backup's copy), so that on a busy machine the work clients wait on goes
// first, as a compaction thread yields in RocksDB. (SCHED_IDLE measured no
// better, and a thread starved that hard delays the Go runtime's
// stop-the-world phases: one took 10 ms.) The goroutine exits still locked
// to its thread, so Go ends the thread with it: the priority never reaches
// other work, and raising it again (which needs privileges) is never
// needed. Goroutines fn starts run at normal priority. Setting the priority
// is best effort, and does nothing off Linux.
func Background(fn func() error) error {
	done := make(chan error, 1)
	GoBackground(func() { done <- fn() })
	return <-done
}

// GoBackground starts fn in a goroutine of its own on an OS thread at nice
// BackgroundNice, as Background does, without waiting for it: the caller
// owns the goroutine and learns that fn ended from fn itself.
func GoBackground(fn func()) {
	go func() {
		runtime.LockOSThread()
		lowerThreadPriority(BackgroundNice)
		fn()
	}()
}
