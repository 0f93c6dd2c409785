//go:build linux && !race

package datanode

import (
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/thunderyurts/thunderyurts/datastore"
)

// A full table is outside the Go heap, where the collector does not pace
// by it, and its memory is unmapped once the table is unreachable.
func TestTagTableOutsideHeap(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tags := newTagTable(dedupeMax)
	for i := range dedupeMax {
		tags.add(datastore.Tag{Client: 1, Seq: uint64(i)}, uint64(i), 0)
	}
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 8<<20 {
		t.Fatalf("a table of %d tags grew the heap by %d bytes", dedupeMax, grown)
	}
	if seq, ok := tags.get(datastore.Tag{Client: 1, Seq: 7}); !ok || seq != 7 {
		t.Fatalf("get: %d, %v", seq, ok)
	}
	at, size := uintptr(unsafe.Pointer(&tags.ring[0])), uintptr(dedupeMax)*(unsafe.Sizeof(tagged{})+2*4)
	if !mapped(at, size) {
		t.Fatalf("the table at %#x is not mapped", at)
	}
	tags = nil
	for deadline := time.Now().Add(10 * time.Second); mapped(at, size); {
		if time.Now().After(deadline) {
			t.Fatalf("the table at %#x is still mapped 10 s after it became unreachable", at)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// mapped reports whether every page of [addr, addr+size) is mapped:
// mincore fails with ENOMEM on a range with a hole.
func mapped(addr, size uintptr) bool {
	vec := make([]byte, (size+uintptr(os.Getpagesize())-1)/uintptr(os.Getpagesize()))
	_, _, errno := syscall.Syscall(syscall.SYS_MINCORE, addr, size, uintptr(unsafe.Pointer(&vec[0])))
	return errno == 0
}
