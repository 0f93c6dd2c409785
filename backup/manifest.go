package backup

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ManifestName is the manifest's file name in a backup's directory. It is
// written last: a backup without one is incomplete.
const ManifestName = "manifest.json"

// maxManifest bounds the manifest a reader accepts (a 16384-slot one is
// a few MiB).
const maxManifest = 256 << 20

// Manifest describes a complete backup: where each slot's file is, what it
// holds and its checksum, and the point in each group's log the copy was
// taken at. It is stored as JSON, indented, so operators can read it.
type Manifest struct {
	FormatVersion    int                   `json:"format_version"`
	ID               string                `json:"id"`
	Cluster          string                `json:"cluster"`
	SlotCount        int                   `json:"slot_count"`
	SlotTableVersion int64                 `json:"slot_table_version"`
	Start            time.Time             `json:"start"`
	End              time.Time             `json:"end"`
	ToolVersion      string                `json:"tool_version"`
	Groups           map[string]GroupPoint `json:"groups"`
	Slots            []SlotEntry           `json:"slots"` // by slot, one for every slot
}

// GroupPoint is where in a group's log its slots were copied. A group is
// usually copied once, at one point; when slots moved into it during the
// backup it was copied again for them, and this is its latest copy (each
// slot entry records its own, since manifest version 2).
type GroupPoint struct {
	Epoch    uint64 `json:"epoch"`
	Sequence uint64 `json:"sequence"`
	Node     string `json:"node"` // the node that served the copy
}

// SlotEntry is one slot's file in a backup.
type SlotEntry struct {
	Slot   int    `json:"slot"`
	File   string `json:"file"` // name in the backup's directory
	Group  string `json:"group"`
	SHA256 string `json:"sha256"` // of the file, lower-case hex
	Size   int64  `json:"size"`   // file bytes
	Keys   int64  `json:"keys"`
	Bytes  int64  `json:"bytes"` // key and value bytes
	// Epoch and Sequence are where in Group's log the slot was copied, as
	// in its file's header (manifest version 2; version 1 has the group's
	// point instead).
	Epoch    uint64 `json:"epoch"`
	Sequence uint64 `json:"sequence"`
}

// point is where in its group's log the slot of e was copied.
func (m *Manifest) point(e SlotEntry) (epoch, seq uint64) {
	if m.FormatVersion == 1 {
		g := m.Groups[e.Group]
		return g.Epoch, g.Sequence
	}
	return e.Epoch, e.Sequence
}

// Keys is the number of keys in the backup.
func (m *Manifest) Keys() int64 {
	var n int64
	for _, e := range m.Slots {
		n += e.Keys
	}
	return n
}

// Bytes is the number of key and value bytes in the backup.
func (m *Manifest) Bytes() int64 {
	var n int64
	for _, e := range m.Slots {
		n += e.Bytes
	}
	return n
}

// check reports the first inconsistency in the manifest itself.
func (m *Manifest) check() error {
	if m.FormatVersion != 1 && m.FormatVersion != ManifestVersion {
		return fmt.Errorf("format version %d, this build reads versions 1 and %d", m.FormatVersion, ManifestVersion)
	}
	if _, err := ParseID(m.ID); err != nil {
		return err
	}
	if m.SlotCount < 1 {
		return fmt.Errorf("slot count %d", m.SlotCount)
	}
	if len(m.Slots) != m.SlotCount {
		return fmt.Errorf("%d slot files for %d slots", len(m.Slots), m.SlotCount)
	}
	files := make(map[string]bool, len(m.Slots))
	for i, e := range m.Slots {
		switch {
		case e.Slot != i:
			return fmt.Errorf("entry %d is for slot %d: want every slot once, in order", i, e.Slot)
		case e.File == ManifestName || strings.Contains(e.File, "/") || checkName(e.File) != nil:
			return fmt.Errorf("slot %d: invalid file name %q", e.Slot, e.File)
		case files[e.File]:
			return fmt.Errorf("slot %d: file %s listed twice", e.Slot, e.File)
		case len(e.SHA256) != 64 || strings.ToLower(e.SHA256) != e.SHA256:
			return fmt.Errorf("slot %d: invalid sha256 %q", e.Slot, e.SHA256)
		case e.Size < 0 || e.Keys < 0 || e.Bytes < 0:
			return fmt.Errorf("slot %d: negative size or count", e.Slot)
		}
		if _, err := hex.DecodeString(e.SHA256); err != nil {
			return fmt.Errorf("slot %d: invalid sha256 %q", e.Slot, e.SHA256)
		}
		if _, ok := m.Groups[e.Group]; !ok {
			return fmt.Errorf("slot %d: group %q is not among the manifest's groups", e.Slot, e.Group)
		}
		files[e.File] = true
	}
	return nil
}

// idTime is the layout of the time in a backup ID.
const idTime = "20060102T150405Z"

// NewID returns a new backup ID for a backup started at start: its UTC
// time to the second and 6 random hex digits, "20261202T143000Z-a1b2c3".
// IDs sort by time.
func NewID(start time.Time) string {
	var rnd [3]byte
	_, _ = rand.Read(rnd[:]) // never fails
	return start.UTC().Format(idTime) + "-" + hex.EncodeToString(rnd[:])
}

// ParseID returns the time of the backup ID id, or an error if id is not
// one.
func ParseID(id string) (time.Time, error) {
	ts, rnd, ok := strings.Cut(id, "-")
	if ok && len(ts) == len(idTime) && len(rnd) == 6 && strings.ToLower(rnd) == rnd {
		if _, err := hex.DecodeString(rnd); err == nil {
			if t, err := time.Parse(idTime, ts); err == nil {
				return t, nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a backup ID (like 20261202T143000Z-a1b2c3)", id)
}

// ParseSetRef splits "DEST/ID" (such as "/backups/20261202T143000Z-a1b2c3"
// or "s3://bucket/prefix/20261202T143000Z-a1b2c3") into the destination for
// OpenStore and the backup ID.
func ParseSetRef(ref string) (dest, id string, err error) {
	ref = strings.TrimRight(ref, "/")
	i := strings.LastIndex(ref, "/")
	if i <= 0 || strings.HasSuffix(ref[:i], ":/") {
		return "", "", fmt.Errorf("%q: want DEST/ID, like /backups/20261202T143000Z-a1b2c3", ref)
	}
	dest, id = ref[:i], ref[i+1:]
	if _, err := ParseID(id); err != nil {
		return "", "", fmt.Errorf("%q: want DEST/ID: %w", ref, err)
	}
	return dest, id, nil
}

// ErrIncomplete: the backup has no manifest, because its run failed, was
// interrupted or is still going.
var ErrIncomplete = errors.New("incomplete: no manifest.json (the run failed, was interrupted or is still going)")
