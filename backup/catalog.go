package backup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Info is one backup in a store, as List finds it.
type Info struct {
	ID       string
	Time     time.Time // when the backup started (from its ID)
	Complete bool      // its manifest exists and is consistent
	Manifest *Manifest // nil unless Complete
	Keys     int64     // from the manifest
	Bytes    int64     // key and value bytes, from the manifest
	Files    int       // objects in the backup's directory, manifest included
	Size     int64     // their bytes
	Modified time.Time // the newest object's time, by the store's clock
	Err      error     // why it is not complete
}

// List returns the backups in store, oldest first. Objects whose first
// path element is not a backup ID are ignored. A backup is complete when
// its manifest exists and is consistent; List does not read the slot files
// (Verify does).
func List(ctx context.Context, store Store) ([]Info, error) {
	objs, err := store.List(ctx, "")
	if err != nil {
		return nil, err
	}
	var infos []Info
	byID := map[string]int{}
	hasManifest := map[string]bool{}
	for _, o := range objs {
		id, rest, ok := strings.Cut(o.Name, "/")
		if !ok {
			continue
		}
		t, err := ParseID(id)
		if err != nil {
			continue
		}
		i, seen := byID[id]
		if !seen {
			i = len(infos)
			byID[id] = i
			infos = append(infos, Info{ID: id, Time: t})
		}
		in := &infos[i]
		in.Files++
		in.Size += o.Size
		if o.ModTime.After(in.Modified) {
			in.Modified = o.ModTime
		}
		if rest == ManifestName {
			hasManifest[id] = true
		}
	}
	for i := range infos {
		in := &infos[i]
		if !hasManifest[in.ID] {
			in.Err = fmt.Errorf("backup %s: %w", in.ID, ErrIncomplete)
			continue
		}
		m, err := OpenSet(ctx, store, in.ID)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrIncomplete) {
				return nil, err // the store failed, not the backup
			}
			in.Err = err
			continue
		}
		in.Complete, in.Manifest, in.Keys, in.Bytes = true, m, m.Keys(), m.Bytes()
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].ID < infos[j].ID })
	return infos, nil
}

// Prune applies retention to the backups in store and returns the IDs it
// deleted, oldest first. Only good backups count: complete ones for which
// isGood returns true (nil means Verify passes). Walking from the newest,
// it keeps the first keep good backups; then
//
//   - if keep good backups were found, every backup older than the oldest
//     of them, good or not, is deleted;
//   - an incomplete backup older than the newest good one, and not written
//     to since that one's manifest, is a failed run's leftover: deleted.
//
// Nothing else is deleted: with fewer than keep good backups no good one
// is, so failing runs never cost the last good backups, and a run still
// writing is never touched. isGood is called newest first and only until
// keep good backups are found. A backup's manifest is deleted first, so
// one interrupted midway lists as incomplete.
func Prune(ctx context.Context, store Store, keep int, isGood func(Info) bool) ([]string, error) {
	if keep < 1 {
		return nil, fmt.Errorf("backup retention: keep %d, want at least 1", keep)
	}
	if isGood == nil {
		isGood = func(in Info) bool { return Verify(ctx, store, in.ID) == nil }
	}
	infos, err := List(ctx, store)
	if err != nil {
		return nil, err
	}
	var good []int // indexes into infos, newest first
	for i := len(infos) - 1; i >= 0 && len(good) < keep; i-- {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if infos[i].Complete && isGood(infos[i]) {
			good = append(good, i)
		}
	}
	if len(good) == 0 {
		return nil, nil
	}
	newest := infos[good[0]]
	var doomed []Info
	for i, in := range infos {
		switch {
		case len(good) == keep && i < good[keep-1]:
			doomed = append(doomed, in)
		case !in.Complete && i < good[0] && in.Modified.Before(newest.Modified):
			doomed = append(doomed, in)
		}
	}
	var deleted []string
	for _, in := range doomed {
		if err := deleteSet(ctx, store, in.ID); err != nil {
			return deleted, err
		}
		deleted = append(deleted, in.ID)
	}
	return deleted, nil
}

// deleteSet deletes every object of the backup id, the manifest first.
func deleteSet(ctx context.Context, store Store, id string) error {
	if err := store.Delete(ctx, id+"/"+ManifestName); err != nil {
		return err
	}
	objs, err := store.List(ctx, id+"/")
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := store.Delete(ctx, o.Name); err != nil {
			return err
		}
	}
	return nil
}
