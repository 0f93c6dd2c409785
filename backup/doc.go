// Package backup stores ThunderYurts backups: where they go (a directory
// or an S3 bucket), the slot file format, the manifest, and the operations
// on a stored backup (write, list, verify, prune, read back). It needs no
// cluster: taking the copies from data nodes, scheduling and restoring
// through the client are built on top of it. docs/backups.md describes the
// layout and the file format for operators.
//
// API in brief:
//
//   - Destinations: OpenStore(ctx, "/backups" | "file:///backups" |
//     "s3://bucket/prefix", StoreOptions{S3Endpoint}) returns a Store
//     (Put durable and atomic, Open, List by prefix, Delete). Errors are one
//     line naming destination, operation and object; a missing object wraps
//     ErrNotFound.
//   - Slot files: NewSlotWriter(w, SlotHeader) with Add(key, value) and
//     Close() (records, bytes, size, SHA-256); NewSlotReader(r, name) with
//     Header() and Next(), which checks every checksum and reports damage
//     as a *CorruptError ("backup file <name>: offset N: …", wraps
//     ErrCorrupt).
//   - Writing a backup: NewSet(store, NewID(start)), WriteSlot(ctx, hdr,
//     fill) for every slot of the cluster (concurrently if wanted; each
//     streams into the store; in a directory its fsync comes later, in a
//     background round with others), then Finish(ctx, &Manifest{...}),
//     which waits until every file is durable, reads every file back and
//     writes manifest.json last.
//   - Reading one: OpenSet(ctx, store, id) returns the Manifest;
//     Verify(ctx, store, id) checks everything; ReadSlot(ctx, store, m,
//     entry, fn) streams one slot's records.
//   - The catalogue: List(ctx, store) returns every backup, complete or
//     not, oldest first; Prune(ctx, store, keep, isGood) applies retention.
//     ParseSetRef splits "DEST/ID".
//
// A backup, in the store:
//
//	20261202T143000Z-a1b2c3/slot-0000.tyb
//	20261202T143000Z-a1b2c3/slot-0001.tyb
//	…
//	20261202T143000Z-a1b2c3/manifest.json   written last: until then incomplete
//
// Writing one:
//
//	store, err := backup.OpenStore(ctx, "s3://backups/prod", backup.StoreOptions{})
//	if err != nil {
//		return err
//	}
//	set, err := backup.NewSet(store, backup.NewID(time.Now()))
//	if err != nil {
//		return err
//	}
//	for slot := range slots {
//		hdr := backup.SlotHeader{Slot: slot, Slots: slots, Group: g, Epoch: e, Sequence: seq}
//		_, err := set.WriteSlot(ctx, hdr, func(add func(k, v []byte) error) error {
//			return dumpSlot(ctx, slot, add) // add each record in turn
//		})
//		if err != nil {
//			return err
//		}
//	}
//	return set.Finish(ctx, &backup.Manifest{Cluster: name, SlotCount: slots, Groups: points, Start: start})
//
// minio-go is imported only here (store_s3.go).
package backup
