package sysproc

import (
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// threadNice is the nice value of the calling OS thread (the raw
// getpriority call answers 20 - nice). It may be called from any
// goroutine: a failure is reported with Error.
func threadNice(t testing.TB) int {
	t.Helper()
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	if err != nil {
		t.Error(err)
	}
	return 20 - prio
}

// Background and GoBackground run their work at BackgroundNice on a
// thread of its own; the caller's thread keeps its priority, and so do
// goroutines the work starts.
func TestBackgroundLowersOnlyItsThread(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadNice(t)
	if before >= BackgroundNice {
		t.Skipf("the test runs at nice %d already", before)
	}
	caller := syscall.Gettid()
	var inside, tid, child int
	err := Background(func() error {
		inside, tid = threadNice(t), syscall.Gettid()
		done := make(chan int)
		go func() {
			runtime.LockOSThread() // a thread of its own: not the background one
			done <- threadNice(t)
		}()
		child = <-done
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside != BackgroundNice || tid == caller {
		t.Errorf("Background ran at nice %d on thread %d (the caller's is %d), want nice %d on another", inside, tid, caller, BackgroundNice)
	}
	if child != before {
		t.Errorf("a goroutine started by the background work ran at nice %d, want %d", child, before)
	}
	if got := threadNice(t); got != before {
		t.Errorf("the caller's thread is at nice %d after Background, want %d", got, before)
	}
	done := make(chan int)
	GoBackground(func() { done <- threadNice(t) })
	if got := <-done; got != BackgroundNice {
		t.Errorf("GoBackground ran at nice %d, want %d", got, BackgroundNice)
	}
}

// A child outlives the thread that asked to start it: Linux sends the
// parent-death signal when the starting thread ends, and the threads of
// background work end once idle. (Three children from three threads held
// at once: Go never ends the main thread, which one of them may be.)
func TestStartChildSurvivesThreadsEnding(t *testing.T) {
	setIdleTimeout(t, 20*time.Millisecond)
	exited := make(chan error, 3)
	hold := make(chan struct{})
	for range 3 {
		cmd := exec.Command("sleep", "30")
		started := make(chan error, 1)
		GoBackground(func() { // this thread ends 20 ms after hold is closed
			started <- StartChild(cmd)
			<-hold
		})
		if err := <-started; err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			exited <- cmd.Wait()
			close(done)
		}()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
		})
	}
	close(hold)
	select {
	case err := <-exited:
		t.Fatalf("a child exited (%v) when the thread that asked to start it ended", err)
	case <-time.After(300 * time.Millisecond):
	}
}

// setIdleTimeout makes idle background threads end after d for the test.
func setIdleTimeout(t *testing.T, d time.Duration) {
	idle.mu.Lock()
	before := idle.timeout
	idle.timeout = d
	idle.mu.Unlock()
	t.Cleanup(func() {
		idle.mu.Lock()
		idle.timeout = before
		idle.mu.Unlock()
	})
}

// TestBackgroundThreadsReusedThenEnd: background work runs on a thread a
// finished one left idle, still at low priority, and an idle thread ends
// after the timeout.
func TestBackgroundThreadsReusedThenEnd(t *testing.T) {
	setIdleTimeout(t, 200*time.Millisecond)
	type run struct{ tid, nice int }
	runOnce := func() run {
		done := make(chan run)
		GoBackground(func() { done <- run{syscall.Gettid(), threadNice(t)} })
		return <-done
	}
	waiting := func() int {
		idle.mu.Lock()
		defer idle.mu.Unlock()
		return len(idle.workers)
	}
	first := runOnce()
	for waiting() == 0 { // the thread parks once its fn returned
		time.Sleep(time.Millisecond)
	}
	second := runOnce()
	if second.tid != first.tid || second.nice != BackgroundNice {
		t.Errorf("second work ran on thread %d at nice %d, want the first's idle thread %d at nice %d", second.tid, second.nice, first.tid, BackgroundNice)
	}
	deadline := time.Now().Add(15 * time.Second) // threads parked before the test wait 5 s
	for waiting() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle background threads still wait after 15 s", waiting())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if third := runOnce(); third.nice != BackgroundNice {
		t.Errorf("work on a new thread ran at nice %d, want %d", third.nice, BackgroundNice)
	}
}
