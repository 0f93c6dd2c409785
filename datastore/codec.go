package datastore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// castagnoli is the CRC32C table; the standard library uses the SSE4.2
// instruction for it on amd64, so checking every read costs little.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	crcSize = 4
	seqSize = 8

	// A log entry is: crc(4) | slot(2) | flags(1) | uvarint key length | key |
	// value | epoch(8). The epoch comes last so the checksum of everything
	// before it can be computed by the writing goroutine, and the committer,
	// which assigns epoch and seq, only extends it (see sealEntry).
	entryFixed = crcSize + 2 + 1 + 8

	flagDelete = 1 << 0
)

var (
	bucketMeta  = []byte("meta")
	bucketOplog = []byte("oplog")
)

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

func putSeq(dst []byte, seq uint64) { binary.BigEndian.PutUint64(dst, seq) }

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

func entrySize(keyLen, valueLen int) int {
	var tmp [binary.MaxVarintLen64]byte
	return entryFixed + binary.PutUvarint(tmp[:], uint64(keyLen)) + keyLen + valueLen
}

// encodeEntryBody fills dst (entrySize bytes) with everything but the
// checksum and the epoch. It returns the key as stored inside dst and the
// CRC32C of the bytes between the checksum and the epoch.
func encodeEntryBody(dst []byte, slot int, del bool, key, value []byte) (storedKey []byte, partial uint32) {
	binary.BigEndian.PutUint16(dst[crcSize:], uint16(slot))
	var flags byte
	if del {
		flags |= flagDelete
	}
	dst[crcSize+2] = flags
	n := crcSize + 3
	n += binary.PutUvarint(dst[n:], uint64(len(key)))
	copy(dst[n:], key)
	storedKey = dst[n : n+len(key) : n+len(key)]
	n += len(key)
	copy(dst[n:], value)
	return storedKey, crc32.Checksum(dst[crcSize:len(dst)-8], castagnoli)
}

// sealEntry writes the epoch and the final checksum, which covers the whole
// entry after the checksum field followed by the 8-byte sequence key, so an
// entry stored under the wrong sequence number is caught as well.
func sealEntry(entry []byte, partial uint32, epoch uint64, seqKey []byte) {
	tail := entry[len(entry)-8:]
	binary.BigEndian.PutUint64(tail, epoch)
	c := crc32.Update(partial, castagnoli, tail)
	c = crc32.Update(c, castagnoli, seqKey)
	binary.BigEndian.PutUint32(entry, c)
}

// decodeEntry checks and decodes a stored log entry. Key and Value alias raw.
func decodeEntry(seqKey, raw []byte) (LogEntry, bool) {
	if len(seqKey) != seqSize || len(raw) < entryFixed+1 {
		return LogEntry{}, false
	}
	c := crc32.Update(crc32.Checksum(raw[crcSize:], castagnoli), castagnoli, seqKey)
	if c != binary.BigEndian.Uint32(raw) {
		return LogEntry{}, false
	}
	e := LogEntry{
		Seq:    binary.BigEndian.Uint64(seqKey),
		Epoch:  binary.BigEndian.Uint64(raw[len(raw)-8:]),
		Slot:   int(binary.BigEndian.Uint16(raw[crcSize:])),
		Delete: raw[crcSize+2]&flagDelete != 0,
	}
	body := raw[crcSize+3 : len(raw)-8]
	keyLen, n := binary.Uvarint(body)
	if n <= 0 || keyLen > uint64(len(body)-n) {
		return LogEntry{}, false
	}
	e.Key = body[n : n+int(keyLen)]
	e.Value = body[n+int(keyLen):]
	return e, true
}

// Meta records reuse the value record format with the meta key as the key.

func encodeMetaU64(name []byte, v uint64) []byte {
	var payload [8]byte
	binary.BigEndian.PutUint64(payload[:], v)
	rec := make([]byte, recordSize(len(payload)))
	encodeRecord(rec, name, payload[:])
	return rec
}

func decodeMetaU64(name, rec []byte) (uint64, error) {
	v, ok := openRecord(name, rec)
	if !ok || len(v) != 8 {
		return 0, fmt.Errorf("meta record %s: %w", name, ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// encodeEpochs stores the epoch map as consecutive (epoch, start seq) pairs.
func encodeEpochs(name []byte, epochs []EpochStart) []byte {
	payload := make([]byte, 16*len(epochs))
	for i, e := range epochs {
		binary.BigEndian.PutUint64(payload[16*i:], e.Epoch)
		binary.BigEndian.PutUint64(payload[16*i+8:], e.StartSeq)
	}
	rec := make([]byte, recordSize(len(payload)))
	encodeRecord(rec, name, payload)
	return rec
}

func decodeEpochs(name, rec []byte) ([]EpochStart, error) {
	v, ok := openRecord(name, rec)
	if !ok || len(v)%16 != 0 {
		return nil, fmt.Errorf("meta record %s: %w", name, ErrCorrupt)
	}
	epochs := make([]EpochStart, len(v)/16)
	for i := range epochs {
		epochs[i] = EpochStart{
			Epoch:    binary.BigEndian.Uint64(v[16*i:]),
			StartSeq: binary.BigEndian.Uint64(v[16*i+8:]),
		}
	}
	return epochs, nil
}

func seqOf(key []byte) uint64 { return binary.BigEndian.Uint64(key) }
