package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// HandoverFunc asks the primary at addr to hand its role over gracefully.
type HandoverFunc func(ctx context.Context, addr string, epoch uint64, to string) (*wire.HandoverReply, error)

// FailoverResult is what `admin failover` did.
type FailoverResult struct {
	Group      string `json:"group"`
	OldPrimary string `json:"old_primary"`
	NewPrimary string `json:"new_primary"`
	Epoch      uint64 `json:"epoch"`
	Forced     bool   `json:"forced"`
	// Paused is how long the group refused writes (graceful only).
	Paused time.Duration `json:"paused_ns,omitempty"`
	// MayLose counts the log entries the promoted node lacks compared with
	// the most advanced member that answered (forced only): acknowledged
	// writes among them are lost.
	MayLose uint64 `json:"may_lose_entries,omitempty"`
	// Unknown lists the members that could not be asked (forced only):
	// whatever they hold beyond the promoted node is lost too.
	Unknown []string `json:"unknown_members,omitempty"`
	Warning string   `json:"warning,omitempty"`
}

// ErrNoSuchMember: --to names a node that is not a member of the group.
var ErrNoSuchMember = errors.New("admin: not a member of the group")

// Failover moves group's primary role. Graceful (force false): the current
// primary drains, waits until the target holds its whole log and switches
// in one compare-and-set; nothing acknowledged is lost. Forced: promotes to
// (which must be given) at once with a new epoch and an in-sync set of just
// itself, whatever it lacks; for a group whose primary and in-sync members
// are gone.
func Failover(ctx context.Context, c *coord.Cluster, group, to string, force bool, nodeStatus NodeStatusFunc, handover HandoverFunc) (*FailoverResult, error) {
	g, _, err := c.Group(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("read group %s: %w", group, err)
	}
	if to != "" && !slices.Contains(g.Members, to) {
		return nil, fmt.Errorf("%w: %s is not in group %s (members %v)", ErrNoSuchMember, to, group, g.Members)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("read nodes: %w", err)
	}
	addr := map[string]string{}
	for _, n := range nodes {
		addr[n.ID] = n.Addr
	}
	if !force {
		primaryAddr, ok := addr[g.Primary]
		if g.Primary == "" || !ok {
			return nil, fmt.Errorf("group %s has no live primary to hand over from; use --force --to NODE", group)
		}
		reply, err := handover(ctx, primaryAddr, g.Epoch, to)
		if err != nil {
			return nil, err
		}
		return &FailoverResult{Group: group, OldPrimary: g.Primary, NewPrimary: reply.NewPrimary, Epoch: reply.Epoch,
			Paused: time.Duration(reply.PausedMicros) * time.Microsecond}, nil
	}
	if to == "" {
		return nil, fmt.Errorf("--force needs --to NODE: the member to promote")
	}
	res := &FailoverResult{Group: group, OldPrimary: g.Primary, NewPrimary: to, Forced: true}
	var target, best uint64
	for _, id := range g.Members {
		a, ok := addr[id]
		if !ok || nodeStatus == nil {
			res.Unknown = append(res.Unknown, id)
			continue
		}
		st, err := nodeStatus(ctx, a)
		if err != nil {
			res.Unknown = append(res.Unknown, id)
			continue
		}
		best = max(best, st.LastSeq)
		if id == to {
			target = st.LastSeq
		}
	}
	res.MayLose = best - min(best, target)
	if !slices.Contains(g.ISR, to) {
		res.Warning = fmt.Sprintf("%s was not in sync (ISR %v): writes acknowledged since it fell behind may be lost", to, g.ISR)
	}
	ng, err := c.UpdateGroup(ctx, group, func(cur *coord.Group) error {
		cur.Primary = to
		cur.Epoch++
		cur.ISR = []string{to}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("promote %s: %w", to, err)
	}
	res.Epoch = ng.Epoch
	return res, nil
}

// PrintFailover renders a FailoverResult.
func PrintFailover(w io.Writer, r *FailoverResult, f Format) error {
	return render(w, f, r, func() error {
		ew := &errWriter{w: w}
		if r.Forced {
			ew.printf("forced: %s is now primary of group %s (epoch %d, was %s)\n", r.NewPrimary, r.Group, r.Epoch, orElse(r.OldPrimary, unknownCell))
			ew.printf("it lacks %d log entries the most advanced reachable member has; acknowledged writes among them are lost\n", r.MayLose)
			if len(r.Unknown) > 0 {
				ew.printf("could not ask %s (down or unregistered): what they hold beyond it is lost as well\n", strings.Join(r.Unknown, ", "))
			}
			if r.Warning != "" {
				ew.printf("warning: %s\n", r.Warning)
			}
		} else {
			ew.printf("%s is now primary of group %s (epoch %d, was %s); writes paused %s\n", r.NewPrimary, r.Group, r.Epoch, r.OldPrimary, r.Paused.Round(time.Microsecond))
		}
		return ew.err
	})
}
