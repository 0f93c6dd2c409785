// Package poll waits, in tests, for a condition to hold: every wait of the
// in-process and end-to-end tests goes through it, so they all poll the
// same way and fail with the same kind of message.
//
//	poll.Until(t, 10*time.Second, "b joins the ISR", func() bool { return inISR(b) })
//
// Only tests and test-support packages import it; the binary never does.
package poll

import (
	"errors"
	"testing"
	"time"
)

// interval is how long a poll sleeps between two looks.
const interval = 20 * time.Millisecond

// UntilNil calls cond until it returns nil and fails the test with cond's
// last error when that takes longer than within.
func UntilNil(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", within, err)
		}
		time.Sleep(interval)
	}
}

// Until calls cond until it holds and fails the test, naming what, when
// that takes longer than within.
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	errNot := errors.New(what)
	UntilNil(t, within, func() error {
		if cond() {
			return nil
		}
		return errNot
	})
}
