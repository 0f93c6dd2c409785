package datastore

import (
	"encoding/binary"
	"hash/crc32"
)

// castagnoli is the CRC32C table; the standard library uses the SSE4.2
// instruction for it on amd64, so checking every read costs little.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const crcSize = 4

// slotBucketName is "s" followed by the slot as 2 bytes big-endian.
func slotBucketName(slot int) [3]byte {
	return [3]byte{'s', byte(slot >> 8), byte(slot)}
}

// slotOfBucketName reports the slot a root bucket name stands for, if any.
func slotOfBucketName(name []byte) (int, bool) {
	if len(name) != 3 || name[0] != 's' {
		return 0, false
	}
	return int(name[1])<<8 | int(name[2]), true
}

// recordSize is the stored size of a value: crc(4) | value.
func recordSize(valueLen int) int { return crcSize + valueLen }

// encodeRecord fills dst (recordSize(len(value)) bytes) with a record whose
// CRC32C covers key and value, so a value swapped to another key is caught too.
func encodeRecord(dst, key, value []byte) {
	copy(dst[crcSize:], value)
	c := crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, value)
	binary.BigEndian.PutUint32(dst, c)
}

// openRecord returns the value inside a stored record, or false when the
// record fails its check. The value aliases rec.
func openRecord(key, rec []byte) ([]byte, bool) {
	if len(rec) < crcSize {
		return nil, false
	}
	value := rec[crcSize:]
	c := crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, value)
	return value, c == binary.BigEndian.Uint32(rec)
}
