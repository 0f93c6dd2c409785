package coord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// ClusterMeta is the cluster's identity, written once when it is created.
type ClusterMeta struct {
	Name              string    `json:"name"`
	Slots             int       `json:"slots"` // fixed for the cluster's life
	ReplicationFactor int       `json:"replication_factor"`
	CreatedAt         time.Time `json:"created_at"`
}

// Cluster is the domain view of one cluster's state under
// /thunderyurts/<name>: metadata, slot table, groups, registered nodes and
// the coordinator election. It holds no state of its own beyond the Conn, so
// any number of them may exist; all methods are safe for concurrent use.
// Errors wrap the Conn sentinels; a cluster that was never created gives
// ErrNoCluster. The zero value is not usable; call NewCluster.
type Cluster struct {
	conn Conn
	name string
	log  *slog.Logger
	err  error // the name is invalid: every call returns it
}

// NewCluster returns the view of cluster name over conn. An invalid name is
// reported (ErrInvalid) by every method.
func NewCluster(conn Conn, name string) *Cluster {
	return &Cluster{conn: conn, name: name, log: slog.Default(), err: CheckName("cluster", name)}
}

// WithLogger returns a copy of c that logs (node re-registrations) to log
// instead of slog.Default().
func (c *Cluster) WithLogger(log *slog.Logger) *Cluster {
	cc := *c
	cc.log = log
	return &cc
}

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.name }

// Conn is the connection c works through.
func (c *Cluster) Conn() Conn { return c.conn }

// noCluster turns a missing cluster-level node into ErrNoCluster (still
// matching ErrNoNode).
func (c *Cluster) noCluster(err error) error {
	if errors.Is(err, ErrNoNode) && !errors.Is(err, ErrNoCluster) {
		return fmt.Errorf("%w %q: %w", ErrNoCluster, c.name, err)
	}
	return err
}

// Meta reads the cluster's metadata; ErrNoCluster if it was never created.
func (c *Cluster) Meta(ctx context.Context) (ClusterMeta, error) {
	if c.err != nil {
		return ClusterMeta{}, c.err
	}
	m, _, err := GetJSON[ClusterMeta](ctx, c.conn, metaPath(c.name))
	if err != nil {
		return ClusterMeta{}, fmt.Errorf("cluster meta: %w", c.noCluster(err))
	}
	return *m, nil
}

// CreateIfMissing creates the cluster with meta unless it exists, and reports
// whether this call created it: of concurrent callers exactly one gets true,
// and the cluster then has the winner's meta. An empty meta.Name means the
// cluster's name, a zero CreatedAt means now; Slots and ReplicationFactor
// must be positive (ErrInvalid). Besides meta it creates the slot table
// (version 1, every slot unassigned) and the groups, nodes and coordinators
// directories; every caller completes them, so a creator that died half way
// is finished by the next call. Until then SlotTable may return ErrNoCluster.
func (c *Cluster) CreateIfMissing(ctx context.Context, meta ClusterMeta) (created bool, err error) {
	if c.err != nil {
		return false, c.err
	}
	if meta.Name == "" {
		meta.Name = c.name
	}
	switch {
	case meta.Name != c.name:
		return false, fmt.Errorf("%w: cluster meta names %q, not %q", ErrInvalid, meta.Name, c.name)
	case meta.Slots <= 0:
		return false, fmt.Errorf("%w: cluster %q: %d slots", ErrInvalid, c.name, meta.Slots)
	case meta.ReplicationFactor <= 0:
		return false, fmt.Errorf("%w: cluster %q: replication factor %d", ErrInvalid, c.name, meta.ReplicationFactor)
	}
	if meta.CreatedAt.IsZero() {
		meta.CreatedAt = time.Now().UTC()
	}
	// meta goes first: whoever creates it decides the slot count everyone
	// then uses for the table.
	created, err = createJSON(ctx, c.conn, metaPath(c.name), meta)
	if err != nil {
		return false, fmt.Errorf("create cluster %q: %w", c.name, err)
	}
	if !created {
		if meta, err = c.Meta(ctx); err != nil {
			return false, err
		}
	}
	table := &SlotTable{Version: 1, Owners: make([]string, meta.Slots)}
	if _, err := createJSON(ctx, c.conn, slotsPath(c.name), table); err != nil {
		return created, fmt.Errorf("create cluster %q slot table: %w", c.name, err)
	}
	for _, dir := range []string{groupsDir(c.name), nodesDir(c.name), coordinatorsDir(c.name)} {
		if _, err := c.conn.Create(ctx, dir, nil); err != nil && !errors.Is(err, ErrNodeExists) {
			return created, fmt.Errorf("create cluster %q: %w", c.name, err)
		}
	}
	return created, nil
}

// SlotTable reads the slot table and the version to compare-and-set it with.
func (c *Cluster) SlotTable(ctx context.Context) (*SlotTable, Version, error) {
	if c.err != nil {
		return nil, 0, c.err
	}
	t, v, err := GetJSON[SlotTable](ctx, c.conn, slotsPath(c.name))
	if err != nil {
		return nil, 0, fmt.Errorf("slot table: %w", c.noCluster(err))
	}
	return t, v, nil
}

// WatchSlotTable returns the slot table and a channel of its later versions
// (latest only). The channel is closed when ctx ends or the session is in
// doubt; watch again then.
func (c *Cluster) WatchSlotTable(ctx context.Context) (*SlotTable, <-chan *SlotTable, error) {
	if c.err != nil {
		return nil, nil, c.err
	}
	t, ch, err := watchJSON[SlotTable](ctx, c.conn, slotsPath(c.name))
	if err != nil {
		return nil, nil, fmt.Errorf("watch slot table: %w", c.noCluster(err))
	}
	return t, ch, nil
}

// UpdateSlotTable changes the slot table with fn under compare-and-set,
// calling fn again on a fresh copy whenever another writer got in first. If
// fn changed any owner or migration the table's Version goes up by exactly one (whatever
// fn did to Version); if it changed nothing or returned ErrNoChange nothing is
// written. fn must not change the number of slots (ErrInvalid). It returns
// the table as stored.
func (c *Cluster) UpdateSlotTable(ctx context.Context, fn func(*SlotTable) error) (*SlotTable, error) {
	if c.err != nil {
		return nil, c.err
	}
	t, err := UpdateJSON(ctx, c.conn, slotsPath(c.name), func(t *SlotTable) error {
		before := t.Clone()
		if err := fn(t); err != nil {
			return err
		}
		if len(t.Owners) != len(before.Owners) {
			return fmt.Errorf("%w: slot table resized from %d to %d slots", ErrInvalid, len(before.Owners), len(t.Owners))
		}
		if err := t.checkMigrations(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		t.Version = before.Version
		if slices.Equal(t.Owners, before.Owners) && slices.Equal(t.Migrations, before.Migrations) {
			return ErrNoChange
		}
		t.Version++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("update slot table: %w", c.noCluster(err))
	}
	return t, nil
}
