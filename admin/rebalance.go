package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// RebalanceRequest is what `admin rebalance` and `admin drain` ask for.
type RebalanceRequest struct {
	// RateMBps bounds each migration's copy stream; 0 unbounded.
	RateMBps float64
	// DryRun plans without writing anything.
	DryRun bool
	// Drain, when set, is a group whose weight becomes 0 first, so that
	// the plan moves all its slots to the others.
	Drain string
}

// RebalanceView is a rebalance plan as `admin rebalance` shows it.
type RebalanceView struct {
	Plan   string `json:"plan"` // "" for a dry run
	DryRun bool   `json:"dry_run,omitempty"`
	// Following: a plan was already in progress; this is it, not a new one.
	Following bool          `json:"following,omitempty"`
	RateMBps  float64       `json:"rate_mbps,omitempty"`
	Moves     []MoveRow     `json:"moves"`
	Shares    []GroupShares `json:"groups"`
	// Warnings say whose keys and bytes are not known, and why.
	Warnings []string `json:"warnings,omitempty"`
}

// MoveRow is one planned move.
type MoveRow struct {
	Slots Range  `json:"slots"`
	From  string `json:"from"` // "" unassigned slots
	To    string `json:"to"`
	Count int    `json:"count"`
	// Keys and Bytes are what the slots hold on the source group's
	// primary, which the move copies; nil when not known.
	Keys      *uint64 `json:"keys,omitempty"`
	Bytes     *uint64 `json:"bytes,omitempty"`
	State     string  `json:"state"`
	Migration string  `json:"migration,omitempty"`
	Tries     int     `json:"tries,omitempty"`
	Error     string  `json:"error,omitempty"`
}

// GroupShares is one group's slots before and after the plan.
type GroupShares struct {
	Group  string `json:"group"`
	Weight int    `json:"weight"`
	Before int    `json:"before"`
	After  int    `json:"after"`
}

// Rebalance plans the moves that give every group its share of the slots
// by weight (coord.PlanMoves) and, unless it is a dry run, stores the plan
// for the coordinator leader to carry out. If a plan is in progress it
// returns that one (Following) instead; a drain then fails with
// coord.ErrRebalanceRunning, since the plan in progress does not drain.
// ErrNoSuchGroup if the group to drain does not exist. With slotCounts (a
// NodeStatusFunc that asks for NodeStatus.SlotCounts) a new plan shows the
// keys and bytes each move copies, as the source groups' primaries count
// them; a primary that does not answer leaves its moves' counts unknown
// and adds a warning.
func Rebalance(ctx context.Context, c *coord.Cluster, req RebalanceRequest, slotCounts NodeStatusFunc) (*RebalanceView, error) {
	if !req.DryRun {
		cur, err := c.RebalancePlan(ctx)
		switch {
		case err != nil && !errors.Is(err, coord.ErrNoNode):
			return nil, err
		case err == nil && !cur.Done && req.Drain != "":
			return nil, fmt.Errorf("%w: plan %s; drain %s once it is done, or stop it with admin rebalance --cancel", coord.ErrRebalanceRunning, cur.ID, req.Drain)
		case err == nil && !cur.Done:
			return follow(ctx, c, cur)
		}
	}
	table, groups, err := planInputs(ctx, c)
	if err != nil {
		return nil, err
	}
	if req.Drain != "" {
		i := slices.IndexFunc(groups, func(g *coord.Group) bool { return g.Name == req.Drain })
		if i < 0 {
			return nil, fmt.Errorf("%w: %s (groups: %s)", ErrNoSuchGroup, req.Drain, strings.Join(groupNames(groups), ", "))
		}
		zero := 0
		drained := *groups[i]
		drained.Weight = &zero
		groups[i] = &drained
		if !req.DryRun {
			if _, err := c.SetGroupWeight(ctx, req.Drain, 0); err != nil {
				return nil, err
			}
		}
	}
	plan := coord.RebalancePlan{Moves: coord.PlanMoves(table, groups), RateMBps: req.RateMBps}
	var counts map[string]NodeProbe
	if slotCounts != nil && len(plan.Moves) > 0 {
		counts, err = probePrimaries(ctx, c, groups, func(g string) bool {
			return slices.ContainsFunc(plan.Moves, func(mv coord.Move) bool { return mv.From == g })
		}, slotCounts)
		if err != nil {
			return nil, err
		}
	}
	if !req.DryRun {
		stored, err := c.StartRebalance(ctx, plan)
		if errors.Is(err, coord.ErrRebalanceRunning) {
			// Another operator started one meanwhile: follow theirs.
			cur, rerr := c.RebalancePlan(ctx)
			if rerr != nil {
				return nil, rerr
			}
			return follow(ctx, c, cur)
		}
		if err != nil {
			return nil, err
		}
		plan = *stored
	}
	v := BuildRebalanceView(&plan, table, groups, counts)
	v.DryRun = req.DryRun
	return v, nil
}

// planInputs reads what a plan is made from and shown against.
func planInputs(ctx context.Context, c *coord.Cluster) (*coord.SlotTable, []*coord.Group, error) {
	table, _, err := c.SlotTable(ctx)
	if err != nil {
		return nil, nil, err
	}
	groups, err := c.Groups(ctx)
	if err != nil {
		return nil, nil, err
	}
	return table, groups, nil
}

// follow is the view of plan p, already in progress.
func follow(ctx context.Context, c *coord.Cluster, p *coord.RebalancePlan) (*RebalanceView, error) {
	table, groups, err := planInputs(ctx, c)
	if err != nil {
		return nil, err
	}
	v := BuildRebalanceView(p, table, groups, nil)
	v.Following = true
	return v, nil
}

// CancelRebalance asks the leader to stop the plan in progress: moves that
// have not switched are aborted, no more start. ErrNoRebalance if none is.
func CancelRebalance(ctx context.Context, c *coord.Cluster) (*RebalanceView, error) {
	p, err := c.CancelRebalance(ctx)
	if errors.Is(err, coord.ErrNoNode) || (err == nil && p.Done) {
		return nil, ErrNoRebalance
	}
	if err != nil {
		return nil, err
	}
	return follow(ctx, c, p)
}

// Errors of the rebalance commands.
var (
	ErrNoSuchGroup = errors.New("admin: no such group")
	ErrNoRebalance = errors.New("admin: no rebalance in progress")
)

// BuildRebalanceView assembles a RebalanceView from a plan, the table it
// applies to, the groups and, when not nil, what the source groups'
// primaries answered when asked for their slot counts (by group); it does
// no I/O. Unassigned slots hold no keys to copy.
func BuildRebalanceView(p *coord.RebalancePlan, table *coord.SlotTable, groups []*coord.Group, counts map[string]NodeProbe) *RebalanceView {
	v := &RebalanceView{Plan: p.ID, RateMBps: p.RateMBps, Moves: []MoveRow{}, Shares: []GroupShares{}}
	owners := slices.Clone(table.Owners)
	unknown := map[string]bool{}
	for _, mv := range p.Moves {
		row := moveRow(mv)
		var err error
		if row.Keys, row.Bytes, err = moveCounts(mv, counts); err != nil && !unknown[mv.From] {
			unknown[mv.From] = true
			v.Warnings = append(v.Warnings, fmt.Sprintf("keys and bytes of the moves from %s unknown: %v", mv.From, err))
		}
		v.Moves = append(v.Moves, row)
		if mv.State == coord.MovePending || mv.State == coord.MoveRunning {
			for s := mv.First; s <= mv.Last && s < len(owners); s++ {
				owners[s] = mv.To
			}
		}
	}
	before, after := map[string]int{}, map[string]int{}
	for s := range owners {
		before[table.Owners[s]]++
		after[owners[s]]++
	}
	for _, g := range groups {
		v.Shares = append(v.Shares, GroupShares{Group: g.Name, Weight: g.EffectiveWeight(), Before: before[g.Name], After: after[g.Name]})
	}
	slices.SortFunc(v.Shares, func(a, b GroupShares) int { return strings.Compare(a.Group, b.Group) })
	return v
}

// moveCounts is the keys and bytes move mv copies, as counts (by group)
// have them: nil without counts, or with an error saying why they are not
// known.
func moveCounts(mv coord.Move, counts map[string]NodeProbe) (keys, bytes *uint64, err error) {
	if counts == nil {
		return nil, nil, nil
	}
	sc := map[int]*wire.SlotDigest{} // unassigned slots: nothing to copy
	if mv.From != "" {
		probe, ok := counts[mv.From]
		if !ok {
			return nil, nil, errors.New("its primary was not asked")
		}
		if sc, err = slotCounts(probe); err != nil {
			return nil, nil, err
		}
	}
	k, b := sumCounts(sc, mv.First, mv.Last)
	return &k, &b, nil
}

func moveRow(mv coord.Move) MoveRow {
	return MoveRow{Slots: Range{From: mv.First, To: mv.Last}, From: mv.From, To: mv.To, Count: mv.Slots(), State: string(mv.State),
		Migration: mv.Migration, Tries: mv.Tries, Error: mv.Error}
}

func groupNames(groups []*coord.Group) []string {
	out := make([]string, len(groups))
	for i, g := range groups {
		out[i] = g.Name
	}
	return out
}

// PrintRebalance renders a RebalanceView: a header line, the MOVES table
// and the GROUPS table of slots before and after.
func PrintRebalance(w io.Writer, v *RebalanceView, f Format) error {
	return render(w, f, v, func() error {
		ew := &errWriter{w: w}
		slots := 0
		for _, m := range v.Moves {
			slots += m.Count
		}
		rate := "unbounded"
		if v.RateMBps > 0 {
			rate = strconv.FormatFloat(v.RateMBps, 'f', -1, 64) + " MB/s"
		}
		switch {
		case len(v.Moves) == 0:
			ew.printf("nothing to move: every group holds its share of the slots\n")
		case v.DryRun:
			ew.printf("dry run: %d slots%s would move in %d migrations (copy rate %s)\n", slots, v.totalCounts(), len(v.Moves), rate)
		case v.Following:
			ew.printf("rebalance %s is in progress: %d slots in %d migrations (copy rate %s)\n", v.Plan, slots, len(v.Moves), rate)
		default:
			ew.printf("rebalance %s: %d slots%s move in %d migrations (copy rate %s)\n", v.Plan, slots, v.totalCounts(), len(v.Moves), rate)
		}
		if len(v.Moves) > 0 {
			rows := make([][]string, 0, len(v.Moves))
			for _, m := range v.Moves {
				rows = append(rows, []string{formatRanges([]Range{m.Slots}), orElse(m.From, unassignedLabel), m.To, strconv.Itoa(m.Count),
					optional(m.Keys), optional(m.Bytes), m.State})
			}
			ew.printf("\n")
			ew.table("MOVES", []string{"SLOTS", "FROM", "TO", "COUNT", "KEYS", "BYTES", "STATE"}, rows)
		}
		rows := make([][]string, 0, len(v.Shares))
		for _, s := range v.Shares {
			rows = append(rows, []string{s.Group, strconv.Itoa(s.Weight), strconv.Itoa(s.Before), strconv.Itoa(s.After)})
		}
		ew.printf("\n")
		ew.table("GROUPS", []string{"GROUP", "WEIGHT", "SLOTS NOW", "SLOTS AFTER"}, rows)
		for _, w := range v.Warnings {
			ew.printf("warning: %s\n", w)
		}
		return ew.err
	})
}

// totalCounts is " (K keys, B bytes)", what the moves copy in all, when
// every move's counts are known; else "".
func (v *RebalanceView) totalCounts() string {
	var keys, bytes uint64
	for _, m := range v.Moves {
		if m.Keys == nil || m.Bytes == nil {
			return ""
		}
		keys, bytes = keys+*m.Keys, bytes+*m.Bytes
	}
	return fmt.Sprintf(" (%d keys, %d bytes)", keys, bytes)
}

// RebalanceProgress is how far the latest rebalance plan got.
type RebalanceProgress struct {
	Plan      string `json:"plan"`
	Done      bool   `json:"done"`
	Cancelled bool   `json:"cancelled"`
	// Slots: planned in all; Moved: switched to their new group.
	Slots int `json:"slots"`
	Moved int `json:"moved"`
	// Moves counts the plan's moves by state.
	Moves map[string]int `json:"moves"`
	// Running are the plan's migrations in flight.
	Running []MigrationRow `json:"running"`
	// Failed are the moves that gave up, with why.
	Failed []MoveRow `json:"failed"`
}

// MigrationRow is one migration in flight, with what its target reports.
type MigrationRow struct {
	ID    string `json:"id"`
	Slots Range  `json:"slots"`
	From  string `json:"from"`
	To    string `json:"to"`
	State string `json:"state"`
	// Attempt counts the holds released without a switch (retries).
	Attempt int `json:"attempt"`
	// InState is how long it has been in State.
	InState  time.Duration `json:"in_state_ns"`
	RateMBps float64       `json:"rate_mbps,omitempty"`
	// Keys and Bytes copied in this attempt, and Lag (source log entries
	// not yet imported, once the snapshot is in): the target's report, nil
	// when it did not answer.
	Keys  *uint64 `json:"keys"`
	Bytes *uint64 `json:"bytes"`
	Lag   *uint64 `json:"lag"`
	// Holds is how many holds of the migration the source's primary ended
	// (released or switched) and LastPause how long the last one held
	// requests for the slots: the source's report, nil LastPause when it
	// did not answer or no hold ended yet.
	Holds     int            `json:"holds"`
	LastPause *time.Duration `json:"last_pause_ns"`
	// Error is why the last attempt did not switch.
	Error string `json:"error,omitempty"`
}

// FinishedRow is a finished migration from the history.
type FinishedRow struct {
	ID       string    `json:"id"`
	Slots    Range     `json:"slots"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Moved    bool      `json:"moved"`
	Finished time.Time `json:"finished"`
	Keys     uint64    `json:"keys"`
	Bytes    uint64    `json:"bytes"`
	// Holds and LastPause are as in MigrationRow, as the source last
	// reported them; LastPause nil when no hold was reported.
	Holds     int            `json:"holds"`
	LastPause *time.Duration `json:"last_pause_ns"`
	Error     string         `json:"error,omitempty"`
}

// CollectRebalanceProgress reads the latest plan, the slot table and what
// the targets of its migrations report. ErrNoRebalance if there never was
// a plan.
func CollectRebalanceProgress(ctx context.Context, c *coord.Cluster, nodeStatus NodeStatusFunc) (*RebalanceProgress, error) {
	p, err := c.RebalancePlan(ctx)
	if errors.Is(err, coord.ErrNoNode) {
		return nil, ErrNoRebalance
	}
	if err != nil {
		return nil, err
	}
	table, _, err := c.SlotTable(ctx)
	if err != nil {
		return nil, err
	}
	reports, err := probeMigrations(ctx, c, table, nodeStatus)
	if err != nil {
		return nil, err
	}
	return BuildRebalanceProgress(p, table, reports, time.Now()), nil
}

// BuildRebalanceProgress assembles a RebalanceProgress; reports holds the
// primaries' reports by group. It does no I/O.
func BuildRebalanceProgress(p *coord.RebalancePlan, table *coord.SlotTable, reports map[string]*wire.NodeStatus, now time.Time) *RebalanceProgress {
	out := &RebalanceProgress{Plan: p.ID, Done: p.Done, Cancelled: p.Cancel, Moves: map[string]int{}, Running: []MigrationRow{}, Failed: []MoveRow{}}
	for _, mv := range p.Moves {
		out.Slots += mv.Slots()
		out.Moves[string(mv.State)]++
		switch mv.State {
		case coord.MoveDone:
			out.Moved += mv.Slots()
		case coord.MoveFailed:
			out.Failed = append(out.Failed, moveRow(mv))
		case coord.MoveRunning:
			if m := table.Migration(mv.Migration); m != nil {
				out.Running = append(out.Running, migrationRow(m, reports, now))
			}
		}
	}
	return out
}

// ProgressLine is the one-line progress of a rebalance a terminal shows.
func ProgressLine(p *RebalanceProgress) string {
	const width = 30
	frac := 1.0
	if p.Slots > 0 {
		frac = float64(p.Moved) / float64(p.Slots)
	}
	filled := int(frac * width)
	line := fmt.Sprintf("[%s%s] %3.0f%% %d/%d slots, %d/%d moves done",
		strings.Repeat("#", filled), strings.Repeat("-", width-filled), frac*100, p.Moved, p.Slots, p.Moves[string(coord.MoveDone)], total(p.Moves))
	for _, m := range p.Running {
		line += "; " + m.summary()
	}
	return line
}

// PlainProgressLine is the line a log (not a terminal) gets at each change.
func PlainProgressLine(p *RebalanceProgress) string {
	line := fmt.Sprintf("rebalance %s: %d/%d slots moved, moves %s", p.Plan, p.Moved, p.Slots, formatCounts(p.Moves))
	for _, m := range p.Running {
		line += "; " + m.summary()
	}
	return line
}

func (m *MigrationRow) summary() string {
	s := fmt.Sprintf("%s %s→%s %s", formatRanges([]Range{m.Slots}), m.From, m.To, m.State)
	if m.Keys != nil {
		s += fmt.Sprintf(" %d keys", *m.Keys)
	}
	if m.Lag != nil {
		s += fmt.Sprintf(" lag %d", *m.Lag)
	}
	return s
}

func total(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

func formatCounts(counts map[string]int) string {
	var parts []string
	for _, st := range []coord.MoveState{coord.MoveDone, coord.MoveRunning, coord.MovePending, coord.MoveCancelled, coord.MoveFailed} {
		if n := counts[string(st)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	return strings.Join(parts, ", ")
}

// PrintRebalanceProgress renders how the rebalance ended (or stands).
func PrintRebalanceProgress(w io.Writer, p *RebalanceProgress, f Format) error {
	return render(w, f, p, func() error {
		ew := &errWriter{w: w}
		state := "in progress"
		switch {
		case p.Done && p.Cancelled:
			state = "cancelled"
		case p.Done:
			state = "done"
		}
		ew.printf("rebalance %s %s: %d of %d slots moved; moves %s\n", p.Plan, state, p.Moved, p.Slots, orElse(formatCounts(p.Moves), "none"))
		for _, m := range p.Failed {
			ew.printf("failed: slots %s %s→%s after %d tries: %s\n", formatRanges([]Range{m.Slots}), orElse(m.From, unassignedLabel), m.To, m.Tries, m.Error)
		}
		return ew.err
	})
}

// migrationRow is m with what its primaries report (by group): the
// target's copy, the source's holds.
func migrationRow(m *coord.Migration, reports map[string]*wire.NodeStatus, now time.Time) MigrationRow {
	row := MigrationRow{ID: m.ID, Slots: Range{From: m.First, To: m.Last}, From: m.From, To: m.To, State: string(m.State),
		Attempt: m.Attempt, InState: now.Sub(m.Since).Round(time.Millisecond), RateMBps: m.RateMBps, Error: m.Error}
	if ms := reportOn(reports[m.To], m.ID, "target"); ms != nil {
		row.Keys, row.Bytes = ptr(ms.Keys), ptr(ms.Bytes)
		if ms.SnapshotDone { // before, the source position is not known yet
			row.Lag = ptr(ms.SourceCommitted - min(ms.SourceCommitted, ms.ImportedSeq))
		}
	}
	if ms := reportOn(reports[m.From], m.ID, "source"); ms != nil && ms.Holds > 0 {
		row.Holds, row.LastPause = int(ms.Holds), ptr(time.Duration(ms.LastPauseMicros)*time.Microsecond)
	}
	return row
}

// reportOn is st's report on migration id in role, nil if none.
func reportOn(st *wire.NodeStatus, id, role string) *wire.MigrationStatus {
	for _, ms := range st.GetMigrations() {
		if ms.Id == id && ms.Role == role {
			return ms
		}
	}
	return nil
}

func finishedRow(r *coord.MigrationRecord) *FinishedRow {
	row := &FinishedRow{ID: r.ID, Slots: Range{From: r.First, To: r.Last}, From: r.From, To: r.To, Moved: r.Moved(),
		Finished: r.Finished, Keys: r.Keys, Bytes: r.Bytes, Holds: r.Holds, Error: r.Error}
	if r.Holds > 0 {
		row.LastPause = ptr(r.LastPause())
	}
	return row
}

// probeMigrations asks the primaries of the groups taking part in a
// migration in flight for their reports, by group; nil when there is
// nothing to ask with. A primary that does not answer is left out.
func probeMigrations(ctx context.Context, c *coord.Cluster, table *coord.SlotTable, nodeStatus NodeStatusFunc) (map[string]*wire.NodeStatus, error) {
	if nodeStatus == nil || len(table.Migrations) == 0 {
		return nil, nil
	}
	groups, err := c.Groups(ctx)
	if err != nil {
		return nil, err
	}
	probes, err := probePrimaries(ctx, c, groups, func(g string) bool {
		return slices.ContainsFunc(table.Migrations, func(m coord.Migration) bool { return m.From == g || m.To == g })
	}, nodeStatus)
	if err != nil {
		return nil, err
	}
	out := map[string]*wire.NodeStatus{}
	for g, p := range probes {
		if p.Err == nil {
			out[g] = p.Status
		}
	}
	return out, nil
}

// rebalanceWarnings are the findings about slots and migrations status
// adds: a group with members but no slots (unless drained), and a
// migration in one state for longer than it should take.
func rebalanceWarnings(table *coord.SlotTable, groups []*coord.Group, now time.Time) []string {
	var out []string
	if table == nil {
		return nil
	}
	for _, g := range groups {
		if len(g.Members) > 0 && g.EffectiveWeight() > 0 && len(table.SlotsOf(g.Name)) == 0 {
			out = append(out, fmt.Sprintf("group %s has members but no slots: admin rebalance gives it its share", g.Name))
		}
	}
	for _, m := range table.Migrations {
		if d := now.Sub(m.Since); d > stuckAfter[m.State] {
			out = append(out, fmt.Sprintf("migration %s has been in %s for %s (attempt %d%s)", m.String(), m.State,
				d.Round(time.Second), m.Attempt, orElse(prefixed(", last error: ", m.Error), "")))
		}
	}
	return out
}

// stuckAfter is, per state, how long a migration may stay in it before
// status warns: a hold is released within seconds, cleanup and abort wait
// only for a primary to drop slots, a copy of much data takes long.
var stuckAfter = map[coord.MigrationState]time.Duration{
	coord.MigrationCopy:    time.Hour,
	coord.MigrationHold:    10 * time.Second,
	coord.MigrationCleanup: time.Minute,
	coord.MigrationAbort:   time.Minute,
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// FollowRebalance reports the latest plan's progress to show every interval
// (each collection bounded by callTimeout) until the plan is done or ctx
// ends; it returns the last progress seen, and ctx's error if it ended
// first. The rebalance itself goes on either way: the leader carries it.
func FollowRebalance(ctx context.Context, c *coord.Cluster, nodeStatus NodeStatusFunc, interval, callTimeout time.Duration,
	show func(*RebalanceProgress)) (*RebalanceProgress, error) {
	var last *RebalanceProgress
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		p, err := CollectRebalanceProgress(cctx, c, nodeStatus)
		cancel()
		switch {
		case ctx.Err() != nil:
			return last, ctx.Err()
		case errors.Is(err, ErrNoRebalance):
			return nil, err
		case err == nil:
			last = p
			show(p)
			if p.Done {
				return p, nil
			}
		}
		// A failed read (ZooKeeper away for a moment) is retried.
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// RebalanceRun is a rebalance from its plan to how it ended, as one JSON
// document.
type RebalanceRun struct {
	Plan   *RebalanceView     `json:"plan"`
	Result *RebalanceProgress `json:"result,omitempty"`
}

// PrintRebalanceRun renders r: the plan, then how it ended.
func PrintRebalanceRun(w io.Writer, r *RebalanceRun, f Format) error {
	return render(w, f, r, func() error {
		if err := PrintRebalance(w, r.Plan, FormatTable); err != nil || r.Result == nil {
			return err
		}
		return PrintRebalanceProgress(w, r.Result, FormatTable)
	})
}

// GroupChange is what `admin group weight` or `admin group remove` did.
type GroupChange struct {
	Group   string `json:"group"`
	Weight  *int   `json:"weight,omitempty"`
	Removed bool   `json:"removed,omitempty"`
}

// SetGroupWeight sets group's weight (0 drains it at the next rebalance).
// ErrNoSuchGroup if it does not exist.
func SetGroupWeight(ctx context.Context, c *coord.Cluster, group string, weight int) (*GroupChange, error) {
	g, err := c.SetGroupWeight(ctx, group, weight)
	if errors.Is(err, coord.ErrNoNode) {
		return nil, fmt.Errorf("%w: %s", ErrNoSuchGroup, group)
	}
	if err != nil {
		return nil, err
	}
	return &GroupChange{Group: g.Name, Weight: g.Weight}, nil
}

// RemoveGroup deletes an empty group: no slots, no migration, no running
// node (coord.ErrGroupInUse otherwise). ErrNoSuchGroup if it does not exist.
func RemoveGroup(ctx context.Context, c *coord.Cluster, group string) (*GroupChange, error) {
	err := c.RemoveGroup(ctx, group)
	if errors.Is(err, coord.ErrNoNode) && !errors.Is(err, coord.ErrNoCluster) {
		return nil, fmt.Errorf("%w: %s", ErrNoSuchGroup, group)
	}
	if err != nil {
		return nil, err
	}
	return &GroupChange{Group: group, Removed: true}, nil
}

// PrintGroupChange renders a GroupChange.
func PrintGroupChange(w io.Writer, g *GroupChange, f Format) error {
	return render(w, f, g, func() error {
		ew := &errWriter{w: w}
		if g.Removed {
			ew.printf("group %s removed\n", g.Group)
		} else {
			ew.printf("group %s weight %d: admin rebalance moves slots to match\n", g.Group, *g.Weight)
		}
		return ew.err
	})
}
