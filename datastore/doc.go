// Package datastore is a data node's storage engine: a bbolt file holding
// the key-value pairs of the node's virtual slots together with an op log
// of every change, written durably with group commit and checked by CRC32C
// on every read. It is the only package that imports bbolt.
//
// Each Write (or ApplyLog, for a follower replaying its primary's log) is
// encoded by the calling goroutine and queued; one committer goroutine takes
// everything queued, applies it in one bbolt transaction with one fsync,
// wakes the callers and immediately takes what queued meanwhile, so the
// batch size follows the load and no timer delays a lone write. Every
// mutation gets the next sequence number, and its log entry is written in
// the same transaction as the data, so a read transaction sees data and log
// position of one instant (Snapshot relies on that).
//
// # File layout
//
// The root of the bbolt file holds these buckets:
//
//   - "meta": the records "version" (format version, 1), "slots" (slot
//     count), "epoch" (highest epoch seen), "lastseq" (newest log entry's
//     sequence number), "logepoch" (newest log entry's epoch), each an
//     8-byte big-endian number, and "epochs", the epoch map: pairs of 8-byte
//     big-endian epoch and first sequence number of that epoch.
//   - "s" + 2-byte big-endian slot, one per slot that has ever held a key:
//     the slot's keys as bbolt keys, each value stored as
//     crc32c(key || value) (4 bytes, big-endian) followed by the value.
//   - "oplog": the op log, keyed by 8-byte big-endian sequence number and
//     filled to 100 % since keys only grow. An entry is crc (4) | slot (2) |
//     flags (1, bit 0 = delete) | uvarint key length | key | value |
//     epoch (8); its crc32c covers everything after the crc field followed
//     by the 8-byte sequence key. Sequence numbers are consecutive from
//     FirstLogSeq to LastSeq; the oldest are trimmed a bounded number per
//     commit once more than Options.LogRetention are kept.
//
// Meta records use the value format above (the checksum covers the record
// name and payload). Every checksum is verified on every read; a mismatch
// returns ErrCorrupt, never the data. Castagnoli CRC32C is used (hardware
// accelerated) for stored records; slot hashing elsewhere uses IEEE CRC32,
// which is unrelated.
//
// The freelist is not synced (bbolt NoFreelistSync, map freelist): commits
// write fewer pages, and Open rebuilds the freelist by scanning the file.
//
// # Example
//
//	s, err := datastore.Open("/var/lib/thunder/data.db", datastore.Options{Slots: 1024})
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//	seq, err := s.Write(ctx, []datastore.Mutation{{Slot: 17, Key: []byte("k"), Value: []byte("v")}})
//	if err != nil {
//		return fmt.Errorf("put k: %w", err)
//	}
//	v, err := s.Get(17, []byte("k")) // "v"; seq names the write in the op log
package datastore
