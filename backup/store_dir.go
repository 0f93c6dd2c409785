package backup

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// dirStore keeps each object in a file under root, its name's slashes
// becoming subdirectories. A Put writes a temporary file (".name.tmp-…",
// never listed), fsyncs it, renames it into place and fsyncs the directory,
// so an object is either absent or whole, even across a crash. A backup's
// slot files skip the fsyncs when written and are synced in rounds
// (stager), before the manifest is written.
type dirStore struct {
	root string
}

func openDir(path string) (*dirStore, error) {
	root := filepath.Clean(path)
	st, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, errors.New("directory does not exist (create it first)")
	case err != nil:
		return nil, err
	case !st.IsDir():
		return nil, errors.New("not a directory")
	}
	return &dirStore{root: root}, nil
}

func (d *dirStore) String() string { return d.root }

func (d *dirStore) path(name string) string {
	return filepath.Join(d.root, filepath.FromSlash(name))
}

func (d *dirStore) put(ctx context.Context, name string, r io.Reader) error {
	sf, err := d.stage(name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(sf.f, ctxReader{ctx, r}); err != nil {
		sf.abort()
		return err
	}
	if err := sf.f.Sync(); err != nil {
		sf.abort()
		return err
	}
	if err := sf.commit(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(sf.final))
}

// stage starts writing name into a temporary file, which commit renames
// into place: for Put, after an fsync; for a slot file of a backup, without
// one, syncObjects making it durable later in a round with others.
func (d *dirStore) stage(name string) (*stagedFile, error) {
	final := d.path(name)
	dir := filepath.Dir(final)
	if err := d.mkdirs(dir); err != nil {
		return nil, err
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:]) // never fails
	tmp := filepath.Join(dir, "."+filepath.Base(final)+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return &stagedFile{f: f, tmp: tmp, final: final}, nil
}

// stagedFile is an object being written to its temporary file.
type stagedFile struct {
	f          *os.File
	tmp, final string
}

func (sf *stagedFile) Write(p []byte) (int, error) { return sf.f.Write(p) }

// commit closes the file and renames it into place; on error nothing new
// lists under the name.
func (sf *stagedFile) commit() error {
	err := sf.f.Close()
	if err == nil {
		err = os.Rename(sf.tmp, sf.final)
	}
	if err != nil {
		os.Remove(sf.tmp)
	}
	return err
}

// abort gives the file up.
func (sf *stagedFile) abort() {
	sf.f.Close()
	os.Remove(sf.tmp)
}

// syncObjects makes the named objects, committed without an fsync, durable:
// each file, then each directory holding them (their renames). The files
// are synced syncParallel at a time, so the file system can commit their
// fsyncs together.
func (d *dirStore) syncObjects(names []string) error {
	var mu sync.Mutex
	var first error
	dirs := map[string]bool{}
	next := make(chan string)
	var wg sync.WaitGroup
	for range min(syncParallel, len(names)) {
		wg.Go(func() {
			for p := range next {
				if err := syncFile(p); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, name := range names {
		p := d.path(name)
		dirs[filepath.Dir(p)] = true
		next <- p
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	for dir := range dirs {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}

// syncParallel bounds the fsyncs of one syncObjects at once.
const syncParallel = 8

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}

// mkdirs creates dir and its missing parents below root (never root
// itself: a vanished destination is an error), fsyncing each parent so the
// new entries survive a crash.
func (d *dirStore) mkdirs(dir string) error {
	if _, err := os.Stat(dir); err == nil || dir == d.root {
		return err
	}
	parent := filepath.Dir(dir)
	if len(parent) > len(d.root) {
		if err := d.mkdirs(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

func (d *dirStore) open(_ context.Context, name string) (io.ReadCloser, error) {
	f, err := os.Open(d.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return nil, ErrNotFound
	}
	return f, nil
}

func (d *dirStore) list(ctx context.Context, prefix string) ([]Object, error) {
	// Walk only the directory the prefix points into.
	start := d.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = d.path(prefix[:i])
	}
	var objs []Object
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			// A prefix naming no directory lists nothing; a vanished root
			// is an error.
			if p == start && start != d.root && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == start {
			return nil
		}
		if strings.HasPrefix(e.Name(), ".") { // temporary files
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if e.IsDir() {
			if !strings.HasPrefix(name+"/", prefix) && !strings.HasPrefix(prefix, name+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() || !strings.HasPrefix(name, prefix) {
			return nil
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) { // deleted meanwhile
			return nil
		}
		if err != nil {
			return err
		}
		objs = append(objs, Object{Name: name, Size: info.Size(), ModTime: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Name < objs[j].Name })
	return objs, nil
}

func (d *dirStore) delete(_ context.Context, name string) error {
	p := d.path(name)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// Remove the directories the object leaves empty; the first one that is
	// not empty stops it.
	for dir := filepath.Dir(p); len(dir) > len(d.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}
