package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/thunderyurts/thunderyurts/coord/internal/notify"
)

// NodeInfo is a data node's registration: where to reach it while it is up.
type NodeInfo struct {
	ID        string    `json:"id"`
	Group     string    `json:"group"`
	Addr      string    `json:"addr"` // dRPC host:port
	HTTP      string    `json:"http"` // metrics and health host:port, "" none
	StartedAt time.Time `json:"started_at"`
	// Host and Dir name the machine and data directory of the process
	// that registered, so a restart of that node on the same machine can
	// tell its own stale registration from another's (ReclaimNode).
	Host string `json:"host,omitempty"`
	Dir  string `json:"dir,omitempty"`
	// Boot names the kernel boot the process ran under: a directory lock
	// proves only that no process of the same kernel holds it, and host
	// names repeat across machines (cloned VMs, rescheduled containers).
	Boot string `json:"boot,omitempty"`
}

// CoordinatorInfo is a coordinator's election data.
type CoordinatorInfo struct {
	ID   string `json:"id"`
	Addr string `json:"addr"` // dRPC host:port
	HTTP string `json:"http"` // "" none
}

// RegisterNode publishes info as the ephemeral node nodes/<ID> and keeps it
// published, re-creating it after every session loss, until ctx ends (see
// KeepEphemeral). A zero StartedAt means now. ErrNoCluster if the cluster
// does not exist; ErrNodeExists if another process registered the same ID
// (or this node's previous session has not expired yet: retry after the
// session timeout, or ReclaimNode once that process is known to be gone).
func (c *Cluster) RegisterNode(ctx context.Context, info NodeInfo) error {
	if c.err != nil {
		return c.err
	}
	if err := CheckName("node", info.ID); err != nil {
		return err
	}
	if _, err := c.Meta(ctx); err != nil {
		return fmt.Errorf("register node %q: %w", info.ID, err)
	}
	if info.StartedAt.IsZero() {
		info.StartedAt = time.Now().UTC()
	}
	data, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("%w: register node %q: %w", ErrInvalid, info.ID, err)
	}
	if err := KeepEphemeral(ctx, c.conn, nodePath(c.name, info.ID), data, c.log); err != nil {
		return fmt.Errorf("register node %q: %w", info.ID, err)
	}
	return nil
}

// ReclaimNode deletes the registration nodes/<info.ID> left by an earlier
// process of the same node — one naming the same Host, Dir and Boot as
// info — so
// that info can be registered at once instead of after that process's
// session expires. Only a caller that knows that process is gone may call
// it: a data node does once it holds its data directory's lock, which the
// kernel released when the earlier process died (docs/replication.md,
// "Restarts"). It reports whether it deleted a registration; a
// registration of another host, directory or boot is left alone, as is
// any when info names no boot (false, nil): its session must expire.
func (c *Cluster) ReclaimNode(ctx context.Context, info NodeInfo) (bool, error) {
	if c.err != nil {
		return false, c.err
	}
	if info.Host == "" || info.Dir == "" {
		return false, fmt.Errorf("%w: reclaim node %q: host and dir are required", ErrInvalid, info.ID)
	}
	path := nodePath(c.name, info.ID)
	old, v, err := GetJSON[NodeInfo](ctx, c.conn, path)
	switch {
	case errors.Is(err, ErrNoNode):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reclaim node %q: %w", info.ID, err)
	case old.Host != info.Host || old.Dir != info.Dir || info.Boot == "" || old.Boot != info.Boot || old.StartedAt.Equal(info.StartedAt):
		return false, nil
	}
	// The version pins the delete to the registration just judged stale.
	err = c.conn.Delete(ctx, path, v)
	if errors.Is(err, ErrNoNode) || errors.Is(err, ErrBadVersion) {
		return false, nil // gone or replaced meanwhile: the caller registers again and sees
	}
	if err != nil {
		return false, fmt.Errorf("reclaim node %q: %w", info.ID, err)
	}
	return true, nil
}

// Nodes reads every registered node, sorted by ID.
func (c *Cluster) Nodes(ctx context.Context) ([]NodeInfo, error) {
	if c.err != nil {
		return nil, c.err
	}
	ids, err := c.conn.Children(ctx, nodesDir(c.name))
	if err != nil {
		return nil, fmt.Errorf("nodes: %w", c.noCluster(err))
	}
	return c.readNodes(ctx, ids)
}

// WatchNodes returns the registered nodes and a channel delivering the list
// again (latest only) after each join or leave. The channel is closed when
// ctx ends or the session is in doubt; watch again then.
func (c *Cluster) WatchNodes(ctx context.Context) ([]NodeInfo, <-chan []NodeInfo, error) {
	if c.err != nil {
		return nil, nil, c.err
	}
	wctx, cancel := context.WithCancel(ctx)
	ids, events, err := c.conn.WatchChildren(wctx, nodesDir(c.name))
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("watch nodes: %w", c.noCluster(err))
	}
	nodes, err := c.readNodes(wctx, ids)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("watch nodes: %w", err)
	}
	out := make(chan []NodeInfo, 1)
	go func() {
		defer close(out)
		defer cancel()
		for ev := range events {
			if ev.Err != nil {
				return
			}
			nodes, err := c.readNodes(wctx, ev.Children)
			if err != nil {
				return
			}
			notify.Latest(out, nodes)
		}
	}()
	return nodes, out, nil
}

func (c *Cluster) readNodes(ctx context.Context, ids []string) ([]NodeInfo, error) {
	out := make([]NodeInfo, 0, len(ids))
	for _, id := range ids {
		n, _, err := GetJSON[NodeInfo](ctx, c.conn, nodePath(c.name, id))
		if errors.Is(err, ErrNoNode) {
			continue // left while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("node %q: %w", id, err)
		}
		out = append(out, *n)
	}
	return out, nil
}

// CampaignCoordinator enters the coordinator election with info (see
// Campaign).
func (c *Cluster) CampaignCoordinator(ctx context.Context, info CoordinatorInfo) (*Candidate, error) {
	if c.err != nil {
		return nil, c.err
	}
	data, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("%w: coordinator %q: %w", ErrInvalid, info.ID, err)
	}
	return Campaign(ctx, c.conn, coordinatorsDir(c.name), data)
}

// Coordinators lists the coordinators in election order: [0] is the leader.
func (c *Cluster) Coordinators(ctx context.Context) ([]CoordinatorInfo, error) {
	if c.err != nil {
		return nil, c.err
	}
	dir := coordinatorsDir(c.name)
	cands, err := Candidates(ctx, c.conn, dir)
	if err != nil {
		return nil, err
	}
	out := make([]CoordinatorInfo, 0, len(cands))
	for _, cand := range cands {
		info, err := decodeJSON[CoordinatorInfo](JoinPath(dir, cand.Name), cand.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, *info)
	}
	return out, nil
}
