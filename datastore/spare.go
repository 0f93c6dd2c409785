package datastore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

// A spare is the next log segment, made ready in the background while the
// active one fills: a file under a temporary name, filled with zeros and
// fsynced. Batches written over those zeros change neither the file's size
// nor its block map, so each group commit's fdatasync writes the data blocks
// alone: one disk write instead of data plus inode, and no new page-cache
// pages for the write to allocate. (Measured on this project's machine kind:
// about a third less CPU per fdatasync; three replicas share one disk.)
const (
	spareGlob = "spare-*.tmp"
	// A spare is written zeroChunk at a time, each chunk flushed and
	// followed by zeroPause: a long flush queued on the disk ahead of a
	// commit's fdatasync delays every write waiting on that commit, so the
	// zeros trickle out (a 64 MiB spare takes about three seconds, and is
	// asked for as soon as the segment before it is in use). While the
	// active segment grows (a new store's first, the first after a restore
	// or a cut, or one that found no spare ready), the chunks go out without
	// pauses: each commit's fdatasync then writes the inode and block map
	// too, which slows a fresh group of 3 more than the zeros do (its
	// first three seconds of puts, three runs each: 50,800/s on average
	// paced, 54,800 without pauses).
	zeroChunk = 256 << 10
	zeroPause = 10 * time.Millisecond

	// spareRetry is how long requests are ignored after a spare failed.
	spareRetry = 30 * time.Second
	// spareMinFree: a spare is made only while the disk has this many
	// spares' worth of free space, so it never takes the last of it.
	spareMinFree = 4
)

var errSpareStopped = errors.New("datastore: spare preparation stopped")

// spares owns the goroutine that prepares spare segments.
type spares struct {
	dir    string
	size   int64
	noSync bool
	log    *slog.Logger
	want   chan struct{} // cap 1: the committer asks for the next spare
	ready  chan *os.File // cap 1: a prepared spare
	// asked: a spare is asked for, being prepared or ready; cleared when
	// it is taken or its preparation failed.
	asked atomic.Bool
	// urgent: the active segment grows; the spare is written without pauses.
	urgent atomic.Bool
	stop   chan struct{}
	done   chan struct{}
}

// startSpares removes spares a previous process left behind and starts the
// preparing goroutine; stopSpares stops it.
func startSpares(dir string, segSize int64, noSync bool, log *slog.Logger) (*spares, error) {
	old, err := filepath.Glob(filepath.Join(dir, spareGlob))
	if err != nil {
		return nil, err
	}
	for _, p := range old {
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("remove old spare segment: %w", err)
		}
	}
	sp := &spares{
		// The slack leaves room for the batch that crosses the segment size.
		dir: dir, size: segSize + segSize/64, noSync: noSync, log: log,
		want: make(chan struct{}, 1), ready: make(chan *os.File, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go sp.run()
	return sp, nil
}

func (sp *spares) run() {
	defer close(sp.done)
	for {
		select {
		case <-sp.stop:
			return
		case <-sp.want:
		}
		start := time.Now()
		f, err := sp.prepare()
		if errors.Is(err, errSpareStopped) {
			return
		}
		if err != nil {
			// The log still works without a spare: the next segment grows
			// as it is written. Requests are ignored for a while: retrying
			// at once on a nearly full disk would keep filling it with
			// zeros that the log's own writes may need.
			sp.log.Warn("datastore could not prepare the next log segment; retrying later", "dir", sp.dir, "retry_in", spareRetry, "err", err)
			select {
			case <-sp.stop:
				return
			case <-time.After(spareRetry):
			}
			sp.asked.Store(false)
			continue
		}
		sp.log.Debug("datastore prepared spare log segment", "bytes", sp.size, "took", time.Since(start))
		select {
		case sp.ready <- f:
		case <-sp.stop:
			discardSpare(f)
			return
		}
	}
}

func (sp *spares) prepare() (*os.File, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(sp.dir, &fs); err != nil {
		return nil, err
	}
	if free := int64(fs.Bavail) * int64(fs.Bsize); free < spareMinFree*sp.size {
		return nil, fmt.Errorf("%d MiB free, a spare needs %d MiB and leaves room for %d more", free>>20, sp.size>>20, (spareMinFree-1)*sp.size>>20)
	}
	f, err := os.CreateTemp(sp.dir, spareGlob)
	if err != nil {
		return nil, err
	}
	pause := time.NewTimer(0)
	defer pause.Stop()
	for off := int64(0); off < sp.size; off += zeroChunk {
		select {
		case <-sp.stop:
			discardSpare(f)
			return nil, errSpareStopped
		case <-pause.C:
		}
		if _, err := f.WriteAt(zeros[:min(zeroChunk, sp.size-off)], off); err != nil {
			discardSpare(f)
			return nil, err
		}
		if !sp.noSync {
			if err := fdatasync(f); err != nil {
				discardSpare(f)
				return nil, err
			}
		}
		pause.Reset(sp.pause())
	}
	return f, nil
}

// pause is how long the zeros wait after a chunk.
func (sp *spares) pause() time.Duration {
	if sp.urgent.Load() {
		return 0
	}
	return zeroPause
}

// request asks for a spare unless one is asked for or ready; urgent says
// the active segment grows, so the spare is wanted soon. It never blocks,
// and costs two atomic operations when there is nothing to do.
func (sp *spares) request(urgent bool) {
	if sp.urgent.Load() != urgent {
		sp.urgent.Store(urgent)
	}
	if !sp.asked.Load() && sp.asked.CompareAndSwap(false, true) {
		sp.want <- struct{}{}
	}
}

// take returns a prepared spare moved to path, or nil when none is ready
// (or the move failed; the caller then creates path itself). The move never
// replaces an existing file.
func (sp *spares) take(path string) *os.File {
	select {
	case f := <-sp.ready:
		sp.asked.Store(false)
		if err := os.Link(f.Name(), path); err != nil {
			sp.log.Warn("datastore could not use a spare log segment", "file", f.Name(), "err", err)
			discardSpare(f)
			return nil
		}
		if err := os.Remove(f.Name()); err != nil {
			sp.log.Warn("datastore could not remove a spare's temporary name", "file", f.Name(), "err", err)
		}
		return f
	default:
		return nil
	}
}

// close stops the goroutine and deletes a spare that was not used.
func (sp *spares) close() {
	close(sp.stop)
	<-sp.done
	select {
	case f := <-sp.ready:
		discardSpare(f)
	default:
	}
}

func discardSpare(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// zeros is what spares are written with.
var zeros = make([]byte, zeroChunk)
