package backup

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/thunderyurts/thunderyurts/client"
	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// RestoreConfig configures Restore. Cluster, Store and ID are required.
type RestoreConfig struct {
	Cluster *coord.Cluster
	Store   Store
	ID      string
	// Overwrite allows restoring into a cluster that holds keys: a key in
	// both ends up with the backup's value, other keys stay.
	Overwrite bool
	// Progress, when set, is called every 200ms and once at the end.
	Progress func(Progress)
	// Logger gets the client's routing changes; nil → discard.
	Logger *slog.Logger
	// TLS, when set, makes the connections to the nodes mutual TLS.
	TLS *tls.Config
}

// verifyReaders is how many slot files a restore checks at once before it
// writes anything: the files are small (a slot's share of the keys), and
// reading and hashing them one by one left a core idle.
const verifyReaders = 4

// ErrNotEmpty: Restore found keys in the cluster and was not told to
// overwrite them.
var ErrNotEmpty = errors.New("cluster is not empty")

// Restore loads the backup cfg.ID into the cluster. It verifies the whole
// backup first (the manifest and every file's checksums) and writes
// nothing if any of it is damaged or missing; the error names the file.
// It refuses a cluster that holds keys unless cfg.Overwrite. Every key is
// routed by the cluster's current slot table, so the cluster may have any
// number of groups and another slot count than the one backed up; keys go
// to their group's primary in batches of about a megabyte (Data.Load, an
// admin's call over TLS), each written through the replicated write path.
// Writing a key again with the same value changes nothing: a restore that
// was interrupted is completed by running it again with Overwrite.
func Restore(ctx context.Context, cfg RestoreConfig) (Result, error) {
	start := time.Now()
	// As Verify does, with files read verifyReaders at a time: the
	// cluster is idle until every file is checked.
	man, err := OpenSet(ctx, cfg.Store, cfg.ID)
	if err == nil {
		err = verifyFiles(ctx, cfg.Store, man, verifyReaders)
	}
	if err != nil {
		return Result{}, fmt.Errorf("restore: %w; nothing was written", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kv, err := client.New(ctx, cfg.Cluster, client.Options{Logger: log, TLS: cfg.TLS})
	if err != nil {
		return Result{}, fmt.Errorf("restore: %w", err)
	}
	defer kv.Close()
	if !cfg.Overwrite {
		if err := checkEmpty(ctx, kv); err != nil {
			return Result{}, fmt.Errorf("restore: %w", err)
		}
	}
	routes, err := cfg.Cluster.Routes(ctx)
	if err == nil && len(routes.Table.Owners) == 0 {
		err = errors.New("the cluster has no slots yet")
	}
	if err != nil {
		return Result{}, fmt.Errorf("restore: %w", err)
	}
	m := newMeter(len(man.Slots), cfg.Progress)
	defer m.close()
	l := newLoader(ctx, routes, cfg.Cluster.Routes, nodeclient.Nodes{TLS: cfg.TLS}.Load, m)
	for _, e := range man.Slots {
		if err = ReadSlot(ctx, cfg.Store, man, e, l.put); err != nil {
			break
		}
		m.slots.Add(1)
	}
	if werr := l.wait(); werr != nil {
		err = werr // a batch failing is why the read stopped
	}
	p := m.close()
	res := Result{ID: man.ID, Slots: p.Slots, Keys: p.Keys, Bytes: p.Bytes, Took: time.Since(start)}
	if err != nil {
		return res, fmt.Errorf("restore %s: %w (after %d keys; run it again with --overwrite to finish)", man.ID, err, p.Keys)
	}
	return res, nil
}

// checkEmpty fails with ErrNotEmpty when the cluster holds any key.
func checkEmpty(ctx context.Context, kv *client.Client) error {
	errFound := errors.New("found")
	var key []byte
	err := kv.Scan(ctx, client.ScanOptions{Limit: 1}, func(k, _ []byte) error {
		key = k
		return errFound
	})
	switch {
	case errors.Is(err, errFound):
		return fmt.Errorf("%w: it holds key %q and more maybe (restore with --overwrite to write over them)", ErrNotEmpty, shorten(key))
	case err != nil:
		return fmt.Errorf("check the cluster is empty: %w", err)
	}
	return nil
}
