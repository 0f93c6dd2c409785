//go:build linux && !race

package datanode

import (
	"syscall"
	"unsafe"
)

// tableMemory returns zeroed room for a ring of ringLen entries and an
// index of indexLen places, mapped from the system outside the Go heap,
// and the function that unmaps it. The collector paces itself by the
// heap's live size: 48 MiB of a full table in the heap let the heap grow
// 48 MiB more before each collection, and a node loading at full speed
// peaked that much higher. Entries hold no pointers, so nothing in the
// heap is reachable only from here. If the mapping fails, the room is
// taken from the heap (release nil). The race detector does not watch
// memory outside the heap, so race builds take it from the heap
// (tagtable_heap.go).
func tableMemory(ringLen, indexLen int) (ring []tagged, index []uint64, release func()) {
	ringBytes := ringLen * int(unsafe.Sizeof(tagged{}))
	mem, err := syscall.Mmap(-1, 0, ringBytes+indexLen*8, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return make([]tagged, ringLen), make([]uint64, indexLen), nil
	}
	ring = unsafe.Slice((*tagged)(unsafe.Pointer(&mem[0])), ringLen)
	index = unsafe.Slice((*uint64)(unsafe.Pointer(&mem[ringBytes])), indexLen)
	return ring, index, func() { _ = syscall.Munmap(mem) }
}
