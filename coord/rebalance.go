package coord

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// RebalancePlan is a rebalance an operator started (admin rebalance or
// admin drain), stored at /thunderyurts/<cluster>/rebalance: the moves the
// planner chose and how far each got. The coordinator leader works through
// it; only the latest plan is kept.
type RebalancePlan struct {
	ID      string    `json:"id"`
	Moves   []Move    `json:"moves"`
	Created time.Time `json:"created"`
	// RateMBps bounds each migration's copy stream, in MB/s; 0 unbounded.
	RateMBps float64 `json:"rate_mbps,omitempty"`
	// Cancel asks the leader to abort the moves that have not switched and
	// to start no more (admin rebalance --cancel).
	Cancel bool `json:"cancel,omitempty"`
	// Done: every move is over (done, cancelled or failed); Finished is when.
	Done     bool      `json:"done,omitempty"`
	Finished time.Time `json:"finished,omitzero"`
}

// Move is one contiguous range of slots to move from one group to another,
// First..Last inclusive. From "" means unassigned slots: they are simply
// given to To, there is nothing to copy.
type Move struct {
	From  string    `json:"from"`
	To    string    `json:"to"`
	First int       `json:"first"`
	Last  int       `json:"last"`
	State MoveState `json:"state"`
	// Migration is the ID of the move's current (or last) migration.
	Migration string `json:"migration,omitempty"`
	// Tries counts the migrations that aborted; Error says why the last did.
	Tries int    `json:"tries,omitempty"`
	Error string `json:"error,omitempty"`
}

// MoveState is how far a planned move got.
type MoveState string

// The states of a Move.
const (
	MovePending   MoveState = "pending"   // not started (or to retry)
	MoveRunning   MoveState = "running"   // its migration is in the slot table
	MoveDone      MoveState = "done"      // the slots are To's
	MoveCancelled MoveState = "cancelled" // the plan was cancelled before it switched
	MoveFailed    MoveState = "failed"    // gave up after MaxMoveTries, Error says why
)

// MaxMoveTries is how many times a move's migration may abort before the
// move fails.
const MaxMoveTries = 3

// Over reports whether the move will not change any more.
func (m *Move) Over() bool {
	return m.State == MoveDone || m.State == MoveCancelled || m.State == MoveFailed
}

// Slots is how many slots the move covers.
func (m *Move) Slots() int { return m.Last - m.First + 1 }

// ErrRebalanceRunning: a rebalance plan is still in progress.
var ErrRebalanceRunning = errors.New("coord: a rebalance is in progress")

// RebalancePlan reads the latest plan and its version; ErrNoNode if there
// has never been one.
func (c *Cluster) RebalancePlan(ctx context.Context) (*RebalancePlan, error) {
	if c.err != nil {
		return nil, c.err
	}
	p, _, err := GetJSON[RebalancePlan](ctx, c.conn, rebalancePath(c.name))
	if err != nil {
		return nil, fmt.Errorf("rebalance plan: %w", err)
	}
	return p, nil
}

// StartRebalance stores plan as the latest, replacing one that is done;
// ErrRebalanceRunning (with the running plan's ID) while one is not. An
// empty ID is derived from Created (now when zero); moves start pending.
func (c *Cluster) StartRebalance(ctx context.Context, plan RebalancePlan) (*RebalancePlan, error) {
	if c.err != nil {
		return nil, c.err
	}
	if plan.Created.IsZero() {
		plan.Created = time.Now().UTC()
	}
	if plan.ID == "" {
		plan.ID = "r-" + plan.Created.UTC().Format("20060102T150405.000")
	}
	plan.Moves = slices.Clone(plan.Moves)
	for i := range plan.Moves {
		plan.Moves[i].State = MovePending
	}
	plan.Done = len(plan.Moves) == 0
	if plan.Done {
		plan.Finished = plan.Created
	}
	path := rebalancePath(c.name)
	for {
		old, v, err := GetJSON[RebalancePlan](ctx, c.conn, path)
		switch {
		case errors.Is(err, ErrNoNode):
			created, err := createJSON(ctx, c.conn, path, plan)
			if err != nil {
				return nil, fmt.Errorf("start rebalance: %w", c.noCluster(err))
			}
			if !created {
				continue // someone else created one: look at it
			}
			return &plan, nil
		case err != nil:
			return nil, fmt.Errorf("start rebalance: %w", err)
		case !old.Done:
			return nil, fmt.Errorf("%w: plan %s (admin rebalance follows it, --cancel stops it)", ErrRebalanceRunning, old.ID)
		}
		data, err := encodeJSON(path, plan)
		if err != nil {
			return nil, err
		}
		if _, err := c.conn.Update(ctx, path, data, v); errors.Is(err, ErrBadVersion) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("start rebalance: %w", err)
		}
		return &plan, nil
	}
}

// UpdateRebalancePlan changes the latest plan with fn under compare-and-set
// (see UpdateJSON) and returns it as stored; ErrNoNode if there is none.
func (c *Cluster) UpdateRebalancePlan(ctx context.Context, fn func(*RebalancePlan) error) (*RebalancePlan, error) {
	if c.err != nil {
		return nil, c.err
	}
	p, err := UpdateJSON(ctx, c.conn, rebalancePath(c.name), fn)
	if err != nil {
		return nil, fmt.Errorf("update rebalance plan: %w", err)
	}
	return p, nil
}

// CancelRebalance marks the latest plan cancelled, unless it is done.
func (c *Cluster) CancelRebalance(ctx context.Context) (*RebalancePlan, error) {
	return c.UpdateRebalancePlan(ctx, func(p *RebalancePlan) error {
		if p.Done || p.Cancel {
			return ErrNoChange
		}
		p.Cancel = true
		return nil
	})
}
