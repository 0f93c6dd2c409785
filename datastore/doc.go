// Package datastore is a data node's storage engine: a write-ahead log of
// plain files that makes writes durable, and a bbolt file holding the
// applied key-value pairs of the node's virtual slots, checked by CRC32C on
// every read. It is the only package that imports bbolt.
//
// Each Write (or ApplyLog, for a follower replaying its primary's log, or
// SetEpoch) is copied by the calling goroutine and queued; one committer
// goroutine takes everything queued, assigns sequence numbers, encodes it
// into one buffer and writes it with one write; a syncer goroutine
// fdatasyncs it and wakes the callers. While that fdatasync runs, the
// committer writes what queued meanwhile as the next batch (two at most
// are in flight), so the batch size follows the load and no timer delays a
// lone write. WriteAsync and ApplyLogAsync queue the same way but return
// once queued; the syncer then calls back, so a server need not park a
// goroutine per request. While more than 128 MiB of entries wait to be
// applied, writes wait before they are queued, and while a round runs
// WriteAsync paces clients' writes so that they do not reach that bound
// long before the round ends (pace.go). Entries are readable by ReadLog
// as soon as they are written, before their fdatasync returns, so a
// replicating primary ships them while it fsyncs.
//
// Reads see exactly the entries at or below the committed seq (the high
// watermark, see SetCommitted and Options.AutoCommit). Committed entries
// not yet in bbolt are kept in memory (the overlay), so Get never waits; an
// applier goroutine moves committed entries into bbolt in large
// transactions, off the acknowledgement path, and records the applied seq
// in the same transaction. Scan waits for the applier, then reads bbolt.
// Open replays the log above the applied seq. A failed log write or
// fdatasync, log rewrite or bbolt commit makes the store fail-stop
// (ErrFailed, Store.Failed), a full disk included: the node reopens it.
// Verify checks a closed store through; SetAside moves a damaged one's
// files aside so the node can rebuild it from its replica group.
//
// # Directory layout
//
//   - LOCK: flocked by the process that has the store open.
//   - wal/<first seq, 20 digits>.log: log segments, rolled at about 64 MiB.
//     A record (format v2) is tag 0xD2 (1) | length (4) | crc32c of the
//     payload (4) | crc32c of the 9 header bytes before it (4) | payload, the
//     payload being seq (8) | epoch (8) | type (1: put, 2: delete, 3: epoch
//     marker, 4: commit, 5: tagged put, 6: tagged delete, 7: drop slot, 8:
//     mark) | slot (2) | key length (4) | key | value, all big-endian; a
//     tagged put or delete has its writer's Tag, client id (8) | client seq
//     (8), after the key length; a drop has no key or value, a mark has slot
//     0 and its name as key. An epoch marker says its epoch starts at seq+1 and takes no
//     sequence number. Each commit (one write) ends with a commit record
//     whose value is the commit's byte count (8) | their crc32c (4) | its
//     first data seq, 0 if none (8) | how far the segment had been
//     fdatasynced when it was written (8) | "TYCM" (format version 4 wrote
//     it without that offset); a commit is replayed only when its commit
//     record matches it. Open drops only a torn tail of the newest segment
//     (damage a crash can leave: missing bytes or zeroed sectors that no
//     later commit record vouches for, by its own commit or its synced
//     offset, see record.go), with everything after it; any other damage
//     is ErrCorrupt naming file and offset. v1 records (length
//     (4) | crc32c (4) | payload, first byte at most 0x40) written by format
//     version 2 stay readable, each its own commit. Segments whose entries
//     are all applied and older than Options.LogRetention are deleted.
//   - data.db, a bbolt file: bucket "meta" with the records "version"
//     (format version, 5; 2 to 4 are upgraded on Open), "slots", "applied" (seq
//     of the newest applied entry), "epoch" (highest epoch seen), each an 8-byte big-endian
//     number, "epochs" (the epoch map: pairs of 8-byte epoch and start seq),
//     during a Restore, "restoring", and after one that was given tags,
//     "restoredtags" (Restorer.SetTags: 8-byte client id, client seq and
//     seq per tag, ascending by seq); and one bucket per slot that has
//     held a key, named "s" + 2-byte big-endian slot, holding the slot's
//     keys, each value stored as crc32c(key || value) (4 bytes) followed by
//     the value; bucket "stats" with each slot's stats (keys, bytes and
//     hash, see SlotDigest) under its 2-byte big-endian number, kept by the
//     applier with the data (computed on Open for a store that has none);
//     bucket "marks" with each mark's value under its name. Meta, stats and
//     mark records use the same format with their name as key.
//
// Castagnoli CRC32C is used (hardware accelerated) for stored records; slot
// hashing elsewhere uses IEEE CRC32, which is unrelated.
//
// # Example
//
//	s, err := datastore.Open("/var/lib/thunder/store", datastore.Options{Slots: 1024, AutoCommit: true})
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//	seq, err := s.Write(ctx, []datastore.Mutation{{Slot: 17, Key: []byte("k"), Value: []byte("v")}})
//	if err != nil {
//		return fmt.Errorf("put k: %w", err)
//	}
//	v, err := s.Get(17, []byte("k")) // "v"; seq names the write in the log
package datastore
