package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/wire"
)

// The migration driver (docs/migration.md): under the leader context, it
// starts the moves of the rebalance plan in progress and moves each of
// their migrations on from the two primaries' reports (a migration in the
// slot table that no plan in progress started is left to whoever wrote
// it). Everything it decides on
// is in ZooKeeper (the table, the plan, the history), so a new leader
// continues where the last one stopped; what it keeps in memory (when a
// copy last progressed, when a move may be retried) only delays a decision
// after a change of leader.

// Defaults of the driver's settings (Config).
const (
	defaultMigrationPoll = 100 * time.Millisecond
	defaultHoldTimeout   = 1500 * time.Millisecond
	defaultCopyStall     = 30 * time.Second
	defaultRetryDelay    = 5 * time.Second
	// idlePoll is how often the driver looks for a new plan while no
	// migration is in flight.
	idlePoll = 500 * time.Millisecond
	// holdPoll is how often it polls while a migration is in hold: every
	// poll it waits there is a poll the clients of the held slots wait too,
	// and only the slot table and two primaries are read.
	holdPoll = 10 * time.Millisecond
	// holdRoundsMax bounds a run of hold rounds between two full steps.
	holdRoundsMax = time.Second
	// primaryTTL is how long the driver's steps reuse the primaries'
	// addresses: reading them takes a ZooKeeper read per group and per
	// node, every step, and a driver polling every 100 ms made most of
	// ZooKeeper's load during a rebalance. A primary that does not answer
	// has them read again at the next step.
	primaryTTL = time.Second
	// holdLag is how far (in source log entries) the target may trail the
	// source's committed position for the driver to hold: what the source
	// then pauses for is the target importing that much.
	holdLag = 1024
	// strictHoldAfter: from this many released holds on, the driver holds
	// only when the target reports no lag at all.
	strictHoldAfter = 3
	// maxHolds: after this many released holds the migration is aborted
	// (writes to its slots outpace the copy).
	maxHolds = 10
)

// Phases and roles of wire.MigrationStatus.
const (
	roleSource      = "source"
	roleTarget      = "target"
	phaseCaughtUp   = "caught-up"
	phaseFrozen     = "frozen"
	phaseDropped    = "dropped"
	phaseFailed     = "failed"
	errPlanCanceled = "rebalance cancelled"
)

// driver is one term of leadership's migration work.
type driver struct {
	c   *Coordinator
	cl  *coord.Cluster
	cfg Config
	// progress is, per migration, the target's last report and when it
	// last changed.
	progress map[string]copyProgress
	// retryAt is, per move (its first slot), when an aborted move may start
	// again.
	retryAt map[int]time.Time
	// pauses is, per migration, the source's last report that counted
	// any hold, for the history: the hold that switched shows only in the
	// source's last reports, and the source's report goes missing when its
	// primary fails (its successor counts from none).
	pauses map[string]pauseReport
	// handovers is, per migration in hold or just switched, when the
	// driver saw each phase of its hand-over, for the log line.
	handovers map[string]*handover
	// primary is each group's primary's address as read at primaryRead
	// (zero: read them at the next step); a view shares the map, which is
	// replaced, never changed.
	primary     map[string]string
	primaryRead time.Time
}

// handover is what the driver saw of one hold, for the log line it writes
// once the source reports the hold's end. Times are the driver's; the
// hold starts when it wrote the hold to the table (Since).
type handover struct {
	attempt int
	holds   uint32 // the source's count of ended holds before this one
	// frozen: the source reported F; caught: the target reported its
	// import position through F with digests; compared: the digests were
	// compared; switched: the compare-and-set of the switch succeeded.
	start, frozen, caught, compared, switched time.Time
}

type pauseReport struct {
	holds      uint32
	lastMicros int64
}

type copyProgress struct {
	attempt               int
	imported, keys, bytes uint64
	snapshotDone          bool
	changed               time.Time
}

// driveMigrations runs the driver until ctx, the leadership, ends.
func (c *Coordinator) driveMigrations(ctx context.Context) {
	d := &driver{c: c, cl: c.cfg.Cluster, cfg: c.cfg, progress: map[string]copyProgress{}, retryAt: map[int]time.Time{},
		pauses: map[string]pauseReport{}, handovers: map[string]*handover{}}
	for ctx.Err() == nil {
		v, plan, err := d.step(ctx)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("migration driver", "err", err)
		}
		wait := idlePoll
		if plan != nil {
			wait = d.cfg.MigrationPoll
		}
		if v != nil && d.holdRounds(ctx, v, plan) {
			wait = 0
		}
		_ = clock.Sleep(ctx, wait)
	}
}

// holdRounds polls every holdPoll while a migration of plan is in hold
// (or about to be), reading only the slot table and the reports of the
// two primaries of each such migration, as v found them: every round it
// waits the held slots' clients wait too, and a full step (the plan, the
// groups, the nodes) costs several times what a round does. It returns
// once no migration is in hold, or after holdRoundsMax so that a step
// looks at the plan (a cancel) and the primaries (a failover) again; ran
// says whether it polled at all.
func (d *driver) holdRounds(ctx context.Context, v *view, plan *coord.RebalancePlan) (ran bool) {
	deadline := time.Now().Add(holdRoundsMax)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		var holding []coord.Migration
		for _, m := range v.table.Migrations {
			tgt, _ := v.report(m.To, m.ID, roleTarget)
			if planHas(plan, m.ID) && (m.State == coord.MigrationHold || m.State == coord.MigrationCopy && readyToHold(&m, tgt)) {
				holding = append(holding, m)
			}
		}
		if len(holding) == 0 {
			return ran
		}
		ran = true
		if clock.Sleep(ctx, min(holdPoll, d.cfg.MigrationPoll)) != nil {
			return ran
		}
		table, _, err := d.cl.SlotTable(ctx)
		if err != nil {
			d.c.log.Warn("migration driver: hold round", "err", err)
			continue
		}
		next := &view{table: table, primary: v.primary, reports: map[string]*wire.NodeStatus{}}
		var addrs []string
		for _, m := range holding {
			addrs = appendPrimaries(addrs, next, m)
		}
		d.ask(ctx, next, addrs)
		for i := range table.Migrations {
			m := &table.Migrations[i]
			if slices.ContainsFunc(holding, func(h coord.Migration) bool { return h.ID == m.ID }) {
				if err := d.advance(ctx, next, m, plan); err != nil && !errors.Is(err, coord.ErrMigrationChanged) {
					d.c.log.Warn("migration step failed", "migration", m.String(), "err", err)
				}
			}
		}
		v = next
	}
	return ran
}

// view is what one step reads.
type view struct {
	table *coord.SlotTable
	// primary is each group's primary's address, "" when it has none
	// registered.
	primary map[string]string
	// reports are the migration reports of the primaries asked, by address.
	reports map[string]*wire.NodeStatus
}

// report is the part in migration id the primary of group reported.
func (v *view) report(group, id, role string) (*wire.MigrationStatus, *wire.NodeStatus) {
	st := v.reports[v.primary[group]]
	if st == nil {
		return nil, nil
	}
	for _, m := range st.Migrations {
		if m.Id == id && m.Role == role {
			return m, st
		}
	}
	return nil, st
}

// step does one round: advance every migration of the plan in progress,
// then the plan. It returns what it read (nil when no plan is in
// progress), for the hold rounds.
func (d *driver) step(ctx context.Context) (*view, *coord.RebalancePlan, error) {
	plan, err := d.cl.RebalancePlan(ctx)
	if errors.Is(err, coord.ErrNoNode) || (err == nil && plan.Done) {
		clear(d.progress)
		clear(d.pauses)
		clear(d.handovers)
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	v, err := d.read(ctx, plan)
	if err != nil {
		return nil, plan, err
	}
	for id := range d.progress {
		if v.table.Migration(id) == nil {
			delete(d.progress, id)
		}
	}
	for id := range d.pauses {
		if v.table.Migration(id) == nil {
			delete(d.pauses, id)
		}
	}
	for id := range d.handovers {
		if v.table.Migration(id) == nil {
			delete(d.handovers, id)
		}
	}
	for i := range v.table.Migrations {
		m := v.table.Migrations[i]
		if !planHas(plan, m.ID) {
			continue // not the plan's: whoever wrote it drives it
		}
		if err := d.advance(ctx, v, &m, plan); err != nil && !errors.Is(err, coord.ErrMigrationChanged) {
			d.c.log.Warn("migration step failed", "migration", m.String(), "err", err)
		}
	}
	return v, plan, d.followPlan(ctx, plan.ID)
}

// read takes the table, the primaries' addresses and, for the groups in a
// migration of plan, their primaries' reports (asked in parallel).
func (d *driver) read(ctx context.Context, plan *coord.RebalancePlan) (*view, error) {
	v, err := d.readTable(ctx)
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, m := range v.table.Migrations {
		if planHas(plan, m.ID) {
			addrs = appendPrimaries(addrs, v, m)
			if v.primary[m.From] == "" || v.primary[m.To] == "" {
				d.primaryRead = time.Time{} // in a failover: look again next step
			}
		}
	}
	d.ask(ctx, v, addrs)
	return v, nil
}

// appendPrimaries adds the addresses of m's two groups' primaries to addrs,
// once each.
func appendPrimaries(addrs []string, v *view, m coord.Migration) []string {
	for _, g := range []string{m.From, m.To} {
		if a := v.primary[g]; a != "" && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// ask puts the reports of the data nodes at addrs in v (asked in
// parallel); a node that does not answer has none.
func (d *driver) ask(ctx context.Context, v *view, addrs []string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			st, err := d.cfg.NodeStatus(sctx, a)
			if err != nil {
				d.c.log.Debug("migration: primary did not report", "addr", a, "err", err)
				mu.Lock()
				d.primaryRead = time.Time{} // a failover, perhaps: read the primaries again
				mu.Unlock()
				return
			}
			mu.Lock()
			v.reports[a] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
}

// readTable takes the table and the primaries' addresses (read again
// once older than primaryTTL), no reports.
func (d *driver) readTable(ctx context.Context) (*view, error) {
	table, _, err := d.cl.SlotTable(ctx)
	if err != nil {
		return nil, err
	}
	if d.primary == nil || time.Since(d.primaryRead) >= primaryTTL {
		if err := d.readPrimaries(ctx); err != nil {
			return nil, err
		}
	}
	return &view{table: table, primary: d.primary, reports: map[string]*wire.NodeStatus{}}, nil
}

func (d *driver) readPrimaries(ctx context.Context) error {
	at := time.Now()
	groups, err := d.cl.Groups(ctx)
	if err != nil {
		return err
	}
	nodes, err := d.cl.Nodes(ctx)
	if err != nil {
		return err
	}
	addr := map[string]string{}
	for _, n := range nodes {
		addr[n.ID] = n.Addr
	}
	primary := map[string]string{}
	for _, g := range groups {
		primary[g.Name] = addr[g.Primary]
		if g.Primary != "" && addr[g.Primary] == "" {
			at = time.Time{} // a primary not registered yet: look again next step
		}
	}
	d.primary, d.primaryRead = primary, at
	return nil
}

// advance moves migration m of plan on by at most one state, from the
// reports.
func (d *driver) advance(ctx context.Context, v *view, m *coord.Migration, plan *coord.RebalancePlan) error {
	cancelled := plan.Cancel
	tgt, _ := v.report(m.To, m.ID, roleTarget)
	src, srcNode := v.report(m.From, m.ID, roleSource)
	if src != nil && src.Holds > 0 {
		d.pauses[m.ID] = pauseReport{holds: src.Holds, lastMicros: src.LastPauseMicros}
	}
	now := time.Now()
	switch m.State {
	case coord.MigrationCopy:
		switch {
		case cancelled:
			return d.abort(ctx, m, errPlanCanceled)
		case tgt != nil && tgt.Phase == phaseFailed:
			return d.abort(ctx, m, "target failed: "+tgt.Error)
		case src != nil && src.Phase == phaseFailed:
			return d.abort(ctx, m, "source failed: "+src.Error)
		case m.Attempt >= maxHolds:
			return d.abort(ctx, m, fmt.Sprintf("%d holds ran out of time: writes to slots %d-%d outpace the copy", m.Attempt, m.First, m.Last))
		}
		p := d.noteProgress(m, tgt, now)
		if readyToHold(m, tgt) {
			_, err := d.cl.HoldMigration(ctx, m.ID, m.Attempt)
			if err == nil {
				d.c.log.Info("migration: target caught up, holding", "migration", m.ID, "attempt", m.Attempt,
					"imported_seq", tgt.ImportedSeq, "source_committed", tgt.SourceCommitted)
			}
			return err
		}
		if stalled := now.Sub(p.changed); stalled > d.cfg.CopyStall {
			return d.abort(ctx, m, fmt.Sprintf("copy made no progress for %s (target or source down?)", stalled.Round(time.Second)))
		}
	case coord.MigrationHold:
		if cancelled {
			return d.abort(ctx, m, errPlanCanceled)
		}
		ho := d.handovers[m.ID]
		if ho == nil || ho.attempt != m.Attempt {
			ho = &handover{attempt: m.Attempt, holds: d.pauses[m.ID].holds, start: m.Since}
			d.handovers[m.ID] = ho
		}
		if held := now.Sub(m.Since); held > d.cfg.HoldTimeout {
			_, err := d.cl.ReleaseHold(ctx, m.ID, m.Attempt, fmt.Sprintf("hold ran past %s: the source did not freeze, or the target did not catch up, in time", d.cfg.HoldTimeout))
			if err == nil {
				d.c.log.Info("migration: hold released", "migration", m.ID, "attempt", m.Attempt, "held", held.Round(time.Millisecond))
			}
			return err
		}
		// The source's report must come from a table that shows this hold:
		// an older one could be the freeze of a released hold, after
		// which the source served writes again.
		if src == nil || src.Phase != phaseFrozen || srcNode.TableVersion < v.table.Version {
			return nil
		}
		seen(&ho.frozen, now)
		if tgt == nil || tgt.ImportedSeq < src.FrozenSeq || len(tgt.Digests) == 0 {
			return nil
		}
		seen(&ho.caught, now)
		slot, why := compareDigests(m, src.Digests, tgt.Digests)
		ho.compared = time.Now()
		if why != "" {
			return d.abort(ctx, m, fmt.Sprintf("digest mismatch slot %d: %s", slot, why))
		}
		if _, err := d.cl.SwitchMigration(ctx, m.ID, m.Attempt); err != nil {
			return err
		}
		ho.switched = time.Now()
		d.c.log.Info("migration: switched", "migration", m.ID, "to", m.To, "frozen_seq", src.FrozenSeq, "held", now.Sub(m.Since).Round(time.Millisecond))
	case coord.MigrationCleanup:
		d.logHandover(m, src)
		if src != nil && src.Phase == phaseDropped {
			return d.end(ctx, m)
		}
	case coord.MigrationAbort:
		if tgt != nil && tgt.Phase == phaseDropped {
			return d.end(ctx, m)
		}
	}
	return nil
}

// seen sets *at to now unless it is set: when a phase was first seen.
func seen(at *time.Time, now time.Time) {
	if at.IsZero() {
		*at = now
	}
}

// logHandover writes the line of m's switched hold once the source
// reports that hold ended (its count of holds went up): how long each
// phase took as the driver saw it, from the hold written to the table to
// the source's report of F (source_frozen: the barrier's commit and the
// digests at F, plus the table's watch at the source and a poll), to the
// target's import position through F with digests (target), the digest
// comparison (compare) and the switch's compare-and-set (switch); pause is
// how long the source held requests, ending when it saw the switch.
func (d *driver) logHandover(m *coord.Migration, src *wire.MigrationStatus) {
	ho := d.handovers[m.ID]
	if ho == nil || ho.switched.IsZero() || ho.attempt != m.Attempt || src == nil || src.Holds <= ho.holds {
		return
	}
	delete(d.handovers, m.ID)
	ms := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	d.c.log.Info("migration: hand-over", "migration", m.ID, "attempt", ho.attempt,
		"pause", ms(time.Duration(src.LastPauseMicros)*time.Microsecond), "to_switch", ms(ho.switched.Sub(ho.start)),
		"source_frozen", ms(ho.frozen.Sub(ho.start)), "target", ms(ho.caught.Sub(ho.frozen)),
		"compare", ms(ho.compared.Sub(ho.caught)), "switch", ms(ho.switched.Sub(ho.compared)))
}

// noteProgress records the target's report and returns the copy's
// progress: changed is when it last moved, or when it was caught up.
func (d *driver) noteProgress(m *coord.Migration, tgt *wire.MigrationStatus, now time.Time) copyProgress {
	p, ok := d.progress[m.ID]
	if !ok || p.attempt != m.Attempt {
		p = copyProgress{attempt: m.Attempt, changed: now}
	}
	if tgt != nil {
		moved := tgt.ImportedSeq != p.imported || tgt.Keys != p.keys || tgt.Bytes != p.bytes || tgt.SnapshotDone != p.snapshotDone
		if moved || (tgt.SnapshotDone && tgt.ImportedSeq >= tgt.SourceCommitted) {
			p.changed = now
		}
		p.imported, p.keys, p.bytes, p.snapshotDone = tgt.ImportedSeq, tgt.Keys, tgt.Bytes, tgt.SnapshotDone
	}
	d.progress[m.ID] = p
	return p
}

// readyToHold: the target has the snapshot and trails the source's
// committed log by little, so a hold would be short. After strictHoldAfter
// holds ran out of time it must trail by nothing (docs/migration.md,
// "When holds keep failing").
func readyToHold(m *coord.Migration, tgt *wire.MigrationStatus) bool {
	if tgt == nil || !tgt.SnapshotDone {
		return false
	}
	lag := tgt.SourceCommitted - min(tgt.SourceCommitted, tgt.ImportedSeq)
	if m.Attempt >= strictHoldAfter {
		return lag == 0
	}
	return tgt.Phase == phaseCaughtUp || lag <= holdLag
}

// compareDigests finds the first slot of m whose digests differ; a slot a
// side does not report is empty there.
func compareDigests(m *coord.Migration, src, tgt []*wire.SlotDigest) (int, string) {
	index := func(ds []*wire.SlotDigest) map[int]*wire.SlotDigest {
		out := map[int]*wire.SlotDigest{}
		for _, d := range ds {
			out[int(d.Slot)] = d
		}
		return out
	}
	s, t := index(src), index(tgt)
	for slot := m.First; slot <= m.Last; slot++ {
		a, b := s[slot], t[slot]
		if a.GetKeys() != b.GetKeys() || a.GetBytes() != b.GetBytes() || a.GetHash() != b.GetHash() {
			return slot, fmt.Sprintf("source %d keys %d bytes, target %d keys %d bytes", a.GetKeys(), a.GetBytes(), b.GetKeys(), b.GetBytes())
		}
	}
	return 0, ""
}

func (d *driver) abort(ctx context.Context, m *coord.Migration, why string) error {
	if _, err := d.cl.AbortMigration(ctx, m.ID, why); err != nil {
		return err
	}
	d.c.log.Warn("migration: aborted", "migration", m.String(), "attempt", m.Attempt, "why", why)
	return nil
}

// end writes a finished migration to the history, then takes it out of
// the table; a leader stopped in between records it again, which changes
// nothing.
func (d *driver) end(ctx context.Context, m *coord.Migration) error {
	p, pz := d.progress[m.ID], d.pauses[m.ID]
	rec := coord.MigrationRecord{Migration: *m, Finished: time.Now().UTC(), Keys: p.keys, Bytes: p.bytes,
		Holds: int(pz.holds), LastPauseMs: float64(pz.lastMicros) / 1000}
	if err := d.cl.RecordMigration(ctx, rec); err != nil {
		return err
	}
	if _, err := d.cl.EndMigration(ctx, m.ID, m.State); err != nil {
		return err
	}
	delete(d.progress, m.ID)
	delete(d.pauses, m.ID)
	d.c.log.Info("migration: finished", "migration", m.String(), "moved", rec.Moved(), "error", m.Error)
	return nil
}

func planHas(p *coord.RebalancePlan, id string) bool {
	return slices.ContainsFunc(p.Moves, func(mv coord.Move) bool { return mv.Migration == id })
}

// followPlan settles the plan's moves whose migration has ended, starts
// the pending moves the parallel bounds allow (none once cancelled) and
// marks the plan done when every move is over.
func (d *driver) followPlan(ctx context.Context, id string) error {
	v, err := d.readTable(ctx)
	if err != nil {
		return err
	}
	plan, err := d.cl.RebalancePlan(ctx)
	if err != nil {
		return err
	}
	// What became of the migrations that left the table.
	finished := map[string]*coord.MigrationRecord{}
	for _, mv := range plan.Moves {
		if mv.State != coord.MoveRunning || v.table.Migration(mv.Migration) != nil {
			continue
		}
		rec, err := d.cl.FinishedMigration(ctx, mv.Migration)
		switch {
		case errors.Is(err, coord.ErrNoNode):
			finished[mv.Migration] = nil // never started: the leader stopped first
		case err != nil:
			return err
		default:
			finished[mv.Migration] = rec
		}
	}
	// Unassigned slots have no data to copy: they are given at once.
	assigned := map[int]error{}
	if !plan.Cancel {
		for i, mv := range plan.Moves {
			if mv.State == coord.MovePending && mv.From == "" && v.primary[mv.To] != "" {
				if err := d.assign(ctx, mv); err == nil || errors.Is(err, coord.ErrInvalid) {
					assigned[i] = err
				}
			}
		}
	}
	now := time.Now()
	ids := map[int]string{}
	var started []int
	var retried []int
	plan, err = d.cl.UpdateRebalancePlan(ctx, func(p *coord.RebalancePlan) error {
		if p.ID != id || p.Done {
			return coord.ErrNoChange
		}
		started, retried = started[:0], retried[:0]
		busy := map[string]int{}
		for _, m := range v.table.Migrations {
			busy[m.From]++
			busy[m.To]++
		}
		for i := range p.Moves {
			mv := &p.Moves[i]
			rec, ended := finished[mv.Migration]
			switch {
			case mv.State == coord.MoveRunning && ended && rec == nil:
				mv.State = coord.MovePending
			case mv.State == coord.MoveRunning && ended && rec.Moved():
				mv.State = coord.MoveDone
			case mv.State == coord.MoveRunning && ended && p.Cancel:
				mv.State, mv.Error = coord.MoveCancelled, rec.Error
			case mv.State == coord.MoveRunning && ended:
				mv.Tries++
				mv.State, mv.Error = coord.MovePending, rec.Error
				if mv.Tries >= coord.MaxMoveTries {
					mv.State = coord.MoveFailed
				} else {
					retried = append(retried, mv.First)
				}
			}
			if mv.State != coord.MovePending {
				continue
			}
			if p.Cancel {
				mv.State = coord.MoveCancelled
				continue
			}
			if err, ok := assigned[i]; ok {
				mv.State = coord.MoveDone
				if err != nil {
					mv.State, mv.Error = coord.MoveFailed, err.Error()
				}
				continue
			}
			if mv.From == "" || d.retryAt[mv.First].After(now) || busy[mv.From] >= d.cfg.MigrationsPerGroup ||
				busy[mv.To] >= d.cfg.MigrationsPerGroup || v.primary[mv.From] == "" || v.primary[mv.To] == "" {
				continue
			}
			if ids[i] == "" {
				ids[i] = coord.NewMigrationID(now, mv.First)
			}
			mv.State, mv.Migration = coord.MoveRunning, ids[i]
			busy[mv.From]++
			busy[mv.To]++
			started = append(started, i)
		}
		if !slices.ContainsFunc(p.Moves, func(mv coord.Move) bool { return !mv.Over() }) {
			p.Done, p.Finished = true, now.UTC()
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, first := range retried {
		d.retryAt[first] = now.Add(d.cfg.RetryDelay)
	}
	if plan.Done && plan.ID == id {
		d.c.log.Info("rebalance done", "plan", id, "moves", len(plan.Moves), "cancelled", plan.Cancel)
	}
	for _, i := range started {
		mv := plan.Moves[i]
		_, err := d.cl.StartMigration(ctx, coord.Migration{ID: mv.Migration, From: mv.From, To: mv.To, First: mv.First, Last: mv.Last, RateMBps: plan.RateMBps})
		if startErr := err; errors.Is(startErr, coord.ErrInvalid) {
			// The slots changed hands since the plan was made.
			_, err = d.cl.UpdateRebalancePlan(ctx, func(p *coord.RebalancePlan) error {
				if i >= len(p.Moves) || p.Moves[i].Migration != mv.Migration || p.Moves[i].State != coord.MoveRunning {
					return coord.ErrNoChange
				}
				p.Moves[i].State, p.Moves[i].Error = coord.MoveFailed, startErr.Error()
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("start move of slots %d-%d %s→%s: %w", mv.First, mv.Last, mv.From, mv.To, err)
		}
		d.c.log.Info("migration: started", "migration", mv.Migration, "slots", fmt.Sprintf("%d-%d", mv.First, mv.Last), "from", mv.From, "to", mv.To)
	}
	return nil
}

// assign gives unassigned slots to the move's target, if they still are.
func (d *driver) assign(ctx context.Context, mv coord.Move) error {
	_, err := d.cl.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
		for s := mv.First; s <= mv.Last; s++ {
			if t.Owners[s] != "" {
				return fmt.Errorf("%w: slot %d was assigned to %s meanwhile", coord.ErrInvalid, s, t.Owners[s])
			}
		}
		for s := mv.First; s <= mv.Last; s++ {
			t.Owners[s] = mv.To
		}
		return nil
	})
	if err == nil {
		d.c.log.Info("unassigned slots given", "slots", fmt.Sprintf("%d-%d", mv.First, mv.Last), "to", mv.To)
	}
	return err
}
