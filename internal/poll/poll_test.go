package poll

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeT records a failure instead of ending the test.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = format
	panic(f)
}

func TestUntil(t *testing.T) {
	n := 0
	Until(t, time.Second, "third look", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("%d looks", n)
	}
	f := &fakeT{}
	func() {
		defer func() { _ = recover() }()
		UntilNil(f, 50*time.Millisecond, func() error { return errors.New("never") })
	}()
	if !strings.HasPrefix(f.failed, "not within") {
		t.Fatalf("a condition that never holds failed with %q", f.failed)
	}
}
