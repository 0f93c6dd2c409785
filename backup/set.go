package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thunderyurts/thunderyurts/internal/sysproc"
)

// Set writes one backup into a store: every slot's file with WriteSlot
// (concurrently if the caller likes), then Finish, which checks every file
// and writes the manifest last. Until Finish returns nil the backup lists
// as incomplete.
//
// In a directory, slot files are renamed into place without an fsync each;
// rounds of fsyncs in the background make them durable while the next
// ones are written, and Finish writes the manifest only once every file is
// synced: a crash or a full disk never leaves a backup that lists as
// complete without its files.
type Set struct {
	store Store
	id    string

	mu    sync.Mutex
	slots map[int]SlotEntry
	// Staged slot files not synced yet, whether a sync round runs, and
	// the first error of one (sticky: the backup cannot be finished).
	unsynced map[string]bool
	syncing  bool
	syncErr  error
	idle     *sync.Cond // a sync round ended
}

// NewSet starts writing the backup id (see NewID) into store.
func NewSet(store Store, id string) (*Set, error) {
	if _, err := ParseID(id); err != nil {
		return nil, err
	}
	s := &Set{store: store, id: id, slots: make(map[int]SlotEntry), unsynced: map[string]bool{}}
	s.idle = sync.NewCond(&s.mu)
	return s, nil
}

// ID is the backup's ID.
func (s *Set) ID() string { return s.id }

// WriteSlot writes hdr's slot file, streaming it into the store as fill
// adds records (add fails once the write has failed; fill should return
// its error). Memory stays bounded: nothing is buffered beyond a part. If
// fill or the store fails, nothing is recorded for the slot and an earlier
// file of the slot, if any, is left as it was; calling WriteSlot again
// retries it.
func (s *Set) WriteSlot(ctx context.Context, hdr SlotHeader, fill func(add func(key, value []byte) error) error) (SlotEntry, error) {
	file := SlotFileName(hdr.Slot)
	name := s.id + "/" + file
	if err := hdr.check(); err != nil {
		return SlotEntry{}, fmt.Errorf("backup %s: %s: %w", s.id, file, err)
	}
	w, staged, err := create(ctx, s.store, name)
	if err != nil {
		return SlotEntry{}, err
	}
	sw := NewSlotWriter(w, hdr)
	err = fill(sw.Add)
	var sum SlotSummary
	if err == nil {
		sum, err = sw.Close()
	}
	if err != nil {
		if serr := w.abort(err); serr != nil {
			return SlotEntry{}, serr // it carries err when that is what stopped it
		}
		return SlotEntry{}, fmt.Errorf("backup %s: %s: %w", s.id, file, err)
	}
	if err := w.commit(); err != nil {
		return SlotEntry{}, err
	}
	e := SlotEntry{Slot: hdr.Slot, File: file, Group: hdr.Group, SHA256: sum.SHA256, Size: sum.Size, Keys: sum.Keys, Bytes: sum.Bytes,
		Epoch: hdr.Epoch, Sequence: hdr.Sequence}
	s.mu.Lock()
	s.slots[hdr.Slot] = e
	if staged {
		s.unsynced[name] = true
		if !s.syncing {
			s.syncing = true
			// Owned by the Set: it ends once nothing is left to sync, and
			// Finish waits for it. Background work, as the backup's is.
			sysproc.GoBackground(s.syncRounds)
		}
	}
	s.mu.Unlock()
	return e, nil
}

// syncRounds syncs the staged files, those staged during a round in the
// next, until none is left or one fails.
func (s *Set) syncRounds() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.unsynced) > 0 && s.syncErr == nil {
		names := make([]string, 0, len(s.unsynced))
		for name := range s.unsynced {
			names = append(names, name)
		}
		clear(s.unsynced)
		s.mu.Unlock()
		err := syncObjects(s.store, names)
		s.mu.Lock()
		if err != nil {
			s.syncErr = fmt.Errorf("backup %s: %w", s.id, err)
		}
	}
	s.syncing = false
	s.idle.Broadcast()
}

// synced waits until every staged file is durable, or a sync failed.
func (s *Set) synced() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.syncing {
		s.idle.Wait()
	}
	return s.syncErr
}

// Finish completes the backup. It fills in m's format version, ID, slot
// entries (from WriteSlot) and End (now, if zero); the caller sets the
// rest. It checks the manifest (every slot written once, every group
// named), waits until every slot file is durable, reads every file back
// and verifies it as Verify does, and only then writes the manifest
// durably. m must describe every slot of the cluster, with the groups the
// slot headers named.
func (s *Set) Finish(ctx context.Context, m *Manifest) error {
	s.mu.Lock()
	m.Slots = m.Slots[:0]
	for _, e := range s.slots {
		m.Slots = append(m.Slots, e)
	}
	s.mu.Unlock()
	sort.Slice(m.Slots, func(i, j int) bool { return m.Slots[i].Slot < m.Slots[j].Slot })
	m.FormatVersion, m.ID = ManifestVersion, s.id
	if m.End.IsZero() {
		m.End = time.Now().UTC()
	}
	if err := m.check(); err != nil {
		return fmt.Errorf("backup %s: manifest: %w", s.id, err)
	}
	if err := s.synced(); err != nil {
		return err
	}
	if err := verifyFiles(ctx, s.store, m, 1); err != nil {
		return err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("backup %s: manifest: %w", s.id, err)
	}
	return s.store.Put(ctx, s.id+"/"+ManifestName, bytes.NewReader(append(data, '\n')))
}

// OpenSet reads and checks the manifest of the backup id. A backup without
// one gives an error wrapping ErrIncomplete; a manifest that does not
// parse or is inconsistent, one wrapping ErrCorrupt.
func OpenSet(ctx context.Context, store Store, id string) (*Manifest, error) {
	if _, err := ParseID(id); err != nil {
		return nil, err
	}
	name := id + "/" + ManifestName
	rc, err := store.Open(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("backup %s in %s: %w", id, store, ErrIncomplete)
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxManifest+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxManifest {
		return nil, corrupt(name, "over %d MiB", maxManifest>>20)
	}
	m := new(Manifest)
	err = json.Unmarshal(data, m)
	if err == nil {
		err = m.check()
		if err == nil && m.ID != id {
			err = fmt.Errorf("it is the manifest of %s", m.ID)
		}
	}
	if err != nil {
		return nil, corrupt(name, "%v", err)
	}
	return m, nil
}

// ReadSlot streams the records of one slot file of the backup m, checking
// the header against m and every record's checksum as it goes, and the
// file's size and SHA-256 at its end. fn's key and value are valid only
// during the call; an error from fn stops the read and is returned. Since
// a damaged file is only known once read, restore calls Verify first and
// writes nothing unless it passes.
func ReadSlot(ctx context.Context, store Store, m *Manifest, e SlotEntry, fn func(key, value []byte) error) error {
	return readSlotFile(ctx, store, m, e, fn)
}

// Verify checks the backup id completely: the manifest is there and
// consistent, no file is missing or extra, and every slot file reads back
// with the manifest's size and SHA-256, a header that matches (slot, slot
// count, group, epoch, sequence), every record's checksum, the trailer and
// the manifest's key and byte counts. The error names the first bad file;
// it wraps ErrIncomplete or ErrCorrupt when the backup is at fault rather
// than the store.
func Verify(ctx context.Context, store Store, id string) error {
	m, err := OpenSet(ctx, store, id)
	if err != nil {
		return err
	}
	return verifyFiles(ctx, store, m, 1)
}

// verifyFiles checks that the backup's directory holds exactly m's files
// (and the manifest) and reads every one back, readers files at a time.
func verifyFiles(ctx context.Context, store Store, m *Manifest, readers int) error {
	objs, err := store.List(ctx, m.ID+"/")
	if err != nil {
		return err
	}
	present := make(map[string]int64, len(objs))
	for _, o := range objs {
		present[o.Name] = o.Size
	}
	delete(present, m.ID+"/"+ManifestName)
	for _, e := range m.Slots {
		name := m.ID + "/" + e.File
		size, ok := present[name]
		if !ok {
			return corrupt(name, "missing")
		}
		if size != e.Size {
			return corrupt(name, "%d bytes, the manifest says %d", size, e.Size)
		}
		delete(present, name)
	}
	if len(present) > 0 {
		extra := make([]string, 0, len(present))
		for n := range present {
			extra = append(extra, n)
		}
		sort.Strings(extra)
		return corrupt(extra[0], "not in the manifest")
	}
	return readSlotFiles(ctx, store, m, readers)
}

// readSlotFiles reads every slot file of m, readers at a time, checking
// everything Verify checks of each. The error is the first file's in
// slot order that failed: files are taken in that order, and once one
// fails no other is started, but those started are read to their end.
// The calling goroutine is one of the readers, so one reader reads at
// the caller's priority (a backup's, in the background).
func readSlotFiles(ctx context.Context, store Store, m *Manifest, readers int) error {
	errs := make([]error, len(m.Slots))
	var next atomic.Int64
	var failed atomic.Bool
	read := func() {
		for !failed.Load() {
			i := int(next.Add(1) - 1)
			if i >= len(m.Slots) {
				return
			}
			if errs[i] = readSlotFile(ctx, store, m, m.Slots[i], nil); errs[i] != nil {
				failed.Store(true)
			}
		}
	}
	var wg sync.WaitGroup
	for range min(readers, len(m.Slots)) - 1 {
		wg.Go(read)
	}
	read()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// readSlotFile reads one slot file of m, checking everything Verify checks
// of it, and calls fn (if not nil) for each record.
func readSlotFile(ctx context.Context, store Store, m *Manifest, e SlotEntry, fn func(key, value []byte) error) error {
	name := m.ID + "/" + e.File
	rc, err := store.Open(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return corrupt(name, "missing")
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	cr := &countingHash{r: rc, h: sha256.New()}
	sr, err := NewSlotReader(cr, name)
	if err != nil {
		return err
	}
	want := SlotHeader{Slot: e.Slot, Slots: m.SlotCount, Group: e.Group}
	want.Epoch, want.Sequence = m.point(e)
	if h := sr.Header(); h != want {
		return corrupt(name, "header says slot %d of %d, group %q at epoch %d sequence %d; the manifest says slot %d of %d, group %q at epoch %d sequence %d",
			h.Slot, h.Slots, h.Group, h.Epoch, h.Sequence, want.Slot, want.Slots, want.Group, want.Epoch, want.Sequence)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		k, v, err := sr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if fn != nil {
			if err := fn(k, v); err != nil {
				return err
			}
		}
	}
	if _, err := io.Copy(io.Discard, cr); err != nil { // the reader stopped at the trailer
		return err
	}
	sum := sr.Summary()
	switch {
	case cr.n != e.Size:
		return corrupt(name, "%d bytes, the manifest says %d", cr.n, e.Size)
	case hex.EncodeToString(cr.h.Sum(nil)) != e.SHA256:
		return corrupt(name, "SHA-256 %x does not match the manifest's %s", cr.h.Sum(nil), e.SHA256)
	case sum.Keys != e.Keys || sum.Bytes != e.Bytes:
		return corrupt(name, "%d keys and %d bytes, the manifest says %d and %d", sum.Keys, sum.Bytes, e.Keys, e.Bytes)
	}
	return nil
}

// corrupt is a damaged backup file found by comparing it with its manifest.
func corrupt(name, format string, args ...any) error {
	return &CorruptError{File: name, Offset: -1, Reason: fmt.Sprintf(format, args...)}
}

// countingHash hashes and counts what is read through it.
type countingHash struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (c *countingHash) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}
