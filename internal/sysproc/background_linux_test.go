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
// background work end with it. (Three children: Go never ends the main
// thread, which one of the threads may be.)
func TestStartChildSurvivesThreadsEnding(t *testing.T) {
	exited := make(chan error, 3)
	for range 3 {
		cmd := exec.Command("sleep", "30")
		started := make(chan error, 1)
		GoBackground(func() { started <- StartChild(cmd) }) // this thread ends once StartChild returns
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
	select {
	case err := <-exited:
		t.Fatalf("a child exited (%v) when the thread that asked to start it ended", err)
	case <-time.After(300 * time.Millisecond):
	}
}
