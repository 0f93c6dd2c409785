package datastore

import (
	"errors"
	"fmt"
)

// Errors returned by the Store. Callers test them with errors.Is; most are
// wrapped with the slot, key or sequence number they concern.
var (
	// ErrNotFound is returned by Get and GetMany when the key is absent from
	// its slot.
	ErrNotFound = errors.New("datastore: key not found")

	// ErrCorrupt is returned when a stored record (a value, a write-ahead-log
	// record or a meta record) fails its CRC32C check or cannot be decoded.
	// The data of such a record is never returned. The error names the slot
	// and key, or the file and offset. Open returns it for damage to the log
	// other than a torn tail, and for a damaged bbolt file (a page,
	// the meta pages); Verify for any damage it finds.
	ErrCorrupt = errors.New("datastore: corrupt record")

	// ErrEmptyKey is returned by Validate, Write and ApplyLog for a zero-length
	// key; nothing is written.
	ErrEmptyKey = errors.New("datastore: empty key")

	// ErrKeyTooLarge is returned by Validate, Write and ApplyLog for a key
	// longer than MaxKeySize; nothing is written.
	ErrKeyTooLarge = errors.New("datastore: key too large")

	// ErrValueTooLarge is returned by Validate, Write and ApplyLog for a value
	// longer than MaxValueSize; nothing is written.
	ErrValueTooLarge = errors.New("datastore: value too large")

	// ErrStepEnd is not a failure: SnapshotInSteps's callback returns it to
	// end the step after the key it was given (and took).
	ErrStepEnd = errors.New("datastore: end of the snapshot's step")

	// ErrClosed is returned by every method once Close has been called, and
	// by writes that were still queued when it was.
	ErrClosed = errors.New("datastore: store closed")

	// ErrSlotsMismatch is returned by Open when Options.Slots is non-zero and
	// differs from the slot count stored in the file.
	ErrSlotsMismatch = errors.New("datastore: slot count differs from the stored one")

	// ErrBadSlot is returned for a slot outside [0, Slots); nothing is written.
	ErrBadSlot = errors.New("datastore: slot out of range")

	// ErrStaleEpoch is returned by SetEpoch for an epoch lower than the
	// current one, and by ApplyLog for entries whose epoch is lower than the
	// epoch of the local log's last entry (epochs in a log never go back).
	ErrStaleEpoch = errors.New("datastore: stale epoch")

	// ErrLogTrimmed is returned by ReadLog when the requested sequence number
	// is older than the oldest entry still kept (see Options.LogRetention), or
	// predates a Restore.
	// The reader needs a Snapshot instead.
	ErrLogTrimmed = errors.New("datastore: log entries trimmed")

	// ErrLogGap is returned by ApplyLog when the entries do not continue the
	// local log: the first Seq is not LastSeq()+1, or the Seqs of one call are
	// not consecutive. Entries already applied are refused the same way.
	ErrLogGap = errors.New("datastore: log gap")

	// ErrLocked is returned by Open when another process holds the store
	// directory (a flock on DIR/LOCK) for longer than the one-second open
	// timeout.
	ErrLocked = errors.New("datastore: locked by another process")

	// ErrBadOptions is returned by Open for unusable Options: Slots missing
	// on a new store or outside [1, 65536], negative or too large limits.
	ErrBadOptions = errors.New("datastore: bad options")

	// ErrFailed is returned by every write (Write, ApplyLog, SetEpoch,
	// TruncateAfter, Restore) once a write or fdatasync of the write-ahead
	// log, a log rewrite or a commit of the applied state has failed (see
	// Store.Failed; a full disk under the applier too): the
	// store is then fail-stop, because after a failed fsync nobody knows what
	// reached the disk, and reusing sequence numbers could fork the log.
	// Reads still work; the node must be closed and reopened (a primary
	// steps down).
	ErrFailed = errors.New("datastore: store failed, writes refused")

	// ErrTruncateCommitted is returned by TruncateAfter when asked to remove
	// entries at or below CommittedSeq(): those may already be applied and
	// acknowledged, so they are never taken back.
	ErrTruncateCommitted = errors.New("datastore: truncation below the committed seq")

	// ErrRestoring is returned by Write, ApplyLog, SetEpoch, TruncateAfter,
	// Snapshot and a second Restore while a Restore runs.
	ErrRestoring = errors.New("datastore: restore in progress")

	// ErrFormat is returned by Open for a file that is not a datastore file
	// or was written by an unsupported format version.
	ErrFormat = errors.New("datastore: unsupported file format")

	// ErrBadMutation is returned by Write and ApplyLog for a mutation that
	// is more than one of delete, drop and mark, or a drop with a key or
	// value; nothing is written.
	ErrBadMutation = errors.New("datastore: invalid mutation")
)

// keyForError renders a key for an error message: quoted, and truncated so a
// 4 KiB binary key does not flood the log.
func keyForError(key []byte) string {
	const max = 64
	if len(key) > max {
		return fmt.Sprintf("%q…(%d bytes)", key[:max], len(key))
	}
	return fmt.Sprintf("%q", key)
}

func corruptRecord(slot int, key []byte, why string) error {
	return fmt.Errorf("slot %d key %s: %s: %w", slot, keyForError(key), why, ErrCorrupt)
}
