//go:build !linux || race

package datanode

// tableMemory returns zeroed room for a ring of ringLen entries and an
// index of indexLen places, from the heap: off Linux, and in race builds,
// whose detector watches only the heap.
func tableMemory(ringLen, indexLen int) (ring []tagged, index []uint64, release func()) {
	return make([]tagged, ringLen), make([]uint64, indexLen), nil
}
