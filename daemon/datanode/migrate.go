package datanode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/datastore"
	"github.com/thunderyurts/thunderyurts/internal/clock"
	"github.com/thunderyurts/thunderyurts/wire"
)

// migrations is the node's part in the slot migrations of its slot table
// (docs/migration.md). One goroutine (run) looks at the state each time it
// changes and makes the node's primary act on every migration its group
// takes part in: as the target it imports the slots (migrate_target.go) or
// drops them on an abort; as the source it serves the copy stream
// (migrate_source.go), holds requests for the slots while the table says
// hold (hold.go) and drops its copy at cleanup. Every task belongs to one
// primary role and ends with it; a new primary takes the migration up from
// the table and the marks in its store.
type migrations struct {
	n    *Node
	kick chan struct{}
	// fault corrupts the first record of every copy stream this node
	// serves as a migration source: "drop" leaves it out, "flip" changes
	// its value. For the tests that prove a corrupted copy is caught by the
	// digests; set from the environment variable THUNDER_TEST_MIGRATE_FAULT
	// when the node starts.
	fault string

	holds holds

	mu    sync.Mutex
	tasks map[string]*migrationTask // by migrationTaskKey
	wg    sync.WaitGroup
	// dropped records, per migration id, that this node's group dropped
	// the migration's slots (a committed DropSlots) in the current role.
	dropped map[string]*primary
}

// migrateFaultEnv names the environment variable of the test fault hook.
const migrateFaultEnv = "THUNDER_TEST_MIGRATE_FAULT"

func newMigrations(n *Node) *migrations {
	return &migrations{n: n, kick: make(chan struct{}, 1), fault: os.Getenv(migrateFaultEnv),
		tasks: map[string]*migrationTask{}, dropped: map[string]*primary{}, holds: holds{byID: map[string]*hold{}, pauses: map[string]pause{}}}
}

// migrationTask is one goroutine working on a migration for one primary
// role: an importer, or a drop of the slots.
type migrationTask struct {
	p      *primary
	m      coord.Migration // as the table said when the task started
	cancel context.CancelFunc
	done   chan struct{}
	imp    *importer // importers only
}

// wake asks run to look at the state again.
func (mg *migrations) wake() {
	select {
	case mg.kick <- struct{}{}:
	default:
	}
}

// run reconciles the node's migrations with its state until the node
// stops, then stops every task and lets held requests go.
func (mg *migrations) run(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		mg.reconcile(mg.n.state.Load())
		select {
		case <-ctx.Done():
			mg.reconcile(&state{table: &coord.SlotTable{}})
			mg.wg.Wait()
			return
		case <-mg.kick:
		case <-tick.C:
		}
	}
}

// Task keys: one importer and one drop per migration.
func importKey(id string) string { return "import/" + id }
func dropKey(id string) string   { return "drop/" + id }

// reconcile starts and stops tasks and holds so that they match st: a
// primary role acts on the migrations of its group; anything else acts on
// none.
func (mg *migrations) reconcile(st *state) {
	group := mg.n.cfg.Group
	p := st.primary
	want := map[string]coord.Migration{}
	if p != nil {
		for _, m := range st.table.Migrations {
			switch {
			case m.To == group && (m.State == coord.MigrationCopy || m.State == coord.MigrationHold):
				want[importKey(m.ID)] = m
			case m.To == group && m.State == coord.MigrationAbort, m.From == group && m.State == coord.MigrationCleanup:
				want[dropKey(m.ID)] = m
			}
		}
	}
	mg.mu.Lock()
	stopped := map[string]<-chan struct{}{}
	for key, t := range mg.tasks {
		if _, ok := want[key]; !ok || t.p != p {
			t.cancel()
			delete(mg.tasks, key)
			stopped[key] = t.done
		}
	}
	for id, by := range mg.dropped {
		if by != p || st.table.Migration(id) == nil {
			delete(mg.dropped, id)
		}
	}
	for key, m := range want {
		if mg.tasks[key] != nil || (key == dropKey(m.ID) && mg.dropped[m.ID] == p) {
			continue
		}
		mg.start(key, p, m, stopped[importKey(m.ID)])
	}
	mg.mu.Unlock()
	mg.holds.reconcile(mg, st)
}

// start runs the task key for m in role p, once after is closed (nil: at
// once). mg.mu is held.
func (mg *migrations) start(key string, p *primary, m coord.Migration, after <-chan struct{}) {
	ctx, cancel := context.WithCancel(p.ctx)
	t := &migrationTask{p: p, m: m, cancel: cancel, done: make(chan struct{})}
	if key == importKey(m.ID) {
		t.imp = newImporter(mg.n, p, m)
	}
	mg.tasks[key] = t
	mg.wg.Add(1)
	go func() {
		defer mg.wg.Done()
		defer close(t.done)
		defer cancel()
		if after != nil {
			// A drop waits for the import it ends: a write the import
			// queued must not land after the drop.
			select {
			case <-after:
			case <-ctx.Done():
				return
			}
		}
		if t.imp != nil {
			t.imp.run(ctx)
			return
		}
		mg.drop(ctx, p, m)
	}()
}

// drop removes the migration's slots from the group (the target's staged
// copy on an abort, the source's old copy at cleanup), retrying until it
// is committed or the role ends.
func (mg *migrations) drop(ctx context.Context, p *primary, m coord.Migration) {
	log := mg.n.log.With("migration", m.String())
	for backoff := retryMin; ; backoff = min(2*backoff, retryMax) {
		// A target also forgets its import position with the data.
		if _, err := p.commitWrite(ctx, dropMutations(m, m.To == mg.n.cfg.Group)); err == nil {
			break
		} else if ctx.Err() != nil {
			return
		} else {
			log.Warn("dropping the migration's slots failed; retrying", "err", err)
		}
		if clock.Sleep(ctx, backoff) != nil {
			return
		}
	}
	log.Info("dropped the migration's slots")
	mg.mu.Lock()
	mg.dropped[m.ID] = p
	mg.mu.Unlock()
	mg.wake()
}

// Backoff of the tasks' retries.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 2 * time.Second
)

// dropMutations drops every slot of m; with resetMark also the target's
// import position, in the same write, so a later import never resumes
// from a position whose data is gone.
func dropMutations(m coord.Migration, resetMark bool) []datastore.Mutation {
	muts := make([]datastore.Mutation, 0, m.Last-m.First+2)
	for _, slot := range m.Slots() {
		muts = append(muts, datastore.Mutation{Slot: slot, Drop: true})
	}
	if resetMark {
		muts = append(muts, markMutation(m.ID, 0, false))
	}
	return muts
}

// markName is the name of the mark holding a migration target's import
// position: the source log position its copy of the slots reflects.
func markName(id string) string { return "migration/" + id }

// markMutation records the import position through; set false writes an
// empty value: no position.
func markMutation(id string, through uint64, set bool) datastore.Mutation {
	var v []byte
	if set {
		v = binary.BigEndian.AppendUint64(nil, through)
	} else {
		v = []byte{}
	}
	return datastore.Mutation{Mark: true, Key: []byte(markName(id)), Value: v}
}

// importedThrough reads the committed import position of migration id;
// ok is false when there is none.
func importedThrough(ctx context.Context, store *datastore.Store, id string) (through uint64, ok bool, err error) {
	v, err := store.Mark(ctx, markName(id))
	if err != nil || len(v) != 8 {
		return 0, false, err
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// commitWrite writes muts as this primary's own write: admitted like a
// client's, then durable here, and returns once the in-sync replicas hold
// it (committed).
func (p *primary) commitWrite(ctx context.Context, muts []datastore.Mutation) (uint64, error) {
	seq, err := p.appendWrite(ctx, muts)
	if err != nil {
		return 0, err
	}
	return seq, p.waitCommitted(ctx, seq)
}

// appendWrite is commitWrite without the wait for the in-sync replicas: it
// returns once muts are durable in this node's log, with the sequence
// number to wait for.
func (p *primary) appendWrite(ctx context.Context, muts []datastore.Mutation) (uint64, error) {
	if err := p.admit(); err != nil {
		return 0, err
	}
	seq, err := p.n.store().Write(ctx, muts)
	p.n.noteStoreErr(err)
	if err != nil {
		return 0, err
	}
	p.n.dedupe.appended(seq+1-uint64(len(muts)), tagsOf(muts))
	p.recompute()
	return seq, nil
}

// waitCommitted waits until the high watermark passes seq.
func (p *primary) waitCommitted(ctx context.Context, seq uint64) error {
	for {
		done, advanced, err := p.outcome(seq)
		if done || err != nil {
			return err
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// report is the node's MigrationStatus of every migration its primary
// takes part in, for Status.
func (mg *migrations) report(ctx context.Context, st *state) []*wire.MigrationStatus {
	p := st.primary
	if p == nil {
		return nil
	}
	group := mg.n.cfg.Group
	var out []*wire.MigrationStatus
	for _, m := range st.table.Migrations {
		var r *wire.MigrationStatus
		switch {
		case m.To == group:
			r = mg.targetReport(ctx, p, m)
		case m.From == group:
			r = mg.sourceReport(p, m)
		}
		if r != nil {
			r.Id = m.ID
			out = append(out, r)
		}
	}
	return out
}

// droppedBy says whether role p dropped migration id's slots.
func (mg *migrations) droppedBy(p *primary, id string) bool {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	return mg.dropped[id] == p
}

func (mg *migrations) targetReport(ctx context.Context, p *primary, m coord.Migration) *wire.MigrationStatus {
	r := &wire.MigrationStatus{Role: "target"}
	switch m.State {
	case coord.MigrationAbort:
		if !mg.droppedBy(p, m.ID) {
			return nil
		}
		r.Phase = "dropped"
		return r
	case coord.MigrationCleanup:
		return nil
	}
	mg.mu.Lock()
	t := mg.tasks[importKey(m.ID)]
	mg.mu.Unlock()
	if t == nil || t.p != p {
		return nil
	}
	t.imp.report(ctx, r, m.State == coord.MigrationHold)
	return r
}

func (mg *migrations) sourceReport(p *primary, m coord.Migration) *wire.MigrationStatus {
	r := &wire.MigrationStatus{Role: "source", Phase: "serving"}
	switch m.State {
	case coord.MigrationCleanup:
		if !mg.droppedBy(p, m.ID) {
			return nil
		}
		r.Phase = "dropped"
	case coord.MigrationHold:
		mg.holds.report(r, p, m)
	}
	mg.holds.reportPauses(r, m.ID)
	return r
}

// ownedKeys counts the keys of the slots the node's group owns: slots
// being imported, or not yet dropped after a move, are not the group's.
// When exact, the count is taken once everything committed is applied, so
// a caught-up secondary counts what its primary does; should the applier
// take longer than countWait, or when not exact (a failover's probe, which
// must not wait), the data file's count is returned as it stands (part of
// an apply round in progress included).
func (n *Node) ownedKeys(ctx context.Context, st *state, store *datastore.Store, exact bool) (uint64, error) {
	var owned []int
	for slot, owner := range st.table.Owners {
		if owner == n.cfg.Group {
			owned = append(owned, slot)
		}
	}
	if !exact {
		return slotKeys(ctx, store, owned, 0)
	}
	wctx, cancel := context.WithTimeout(ctx, countWait)
	keys, err := slotKeys(wctx, store, owned, store.CommittedSeq())
	cancel()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return slotKeys(ctx, store, owned, 0)
	}
	return keys, err
}

// countWait bounds how long a status waits for the applier to count keys,
// well within the 2s `admin status` gives each node.
const countWait = time.Second

// slotCounts is the content of every slot the store holds keys in,
// whoever owns it, once everything committed is applied: a slot whose drop
// a migration saw committed is empty by then.
func (n *Node) slotCounts(ctx context.Context, store *datastore.Store) ([]*wire.SlotDigest, error) {
	all := make([]int, n.slots)
	for slot := range all {
		all[slot] = slot
	}
	_, digests, err := store.SlotDigests(ctx, all, store.CommittedSeq())
	if err != nil {
		return nil, fmt.Errorf("slot digests: %w", err)
	}
	return wireDigests(slices.DeleteFunc(digests, func(d datastore.SlotDigest) bool { return d.Keys == 0 })), nil
}

// SlotKeys counts the keys the node's store holds in slots, whoever owns
// them (what a migration copied, or has yet to drop), once everything
// committed is applied.
func (n *Node) SlotKeys(ctx context.Context, slots []int) (uint64, error) {
	store := n.store()
	return slotKeys(ctx, store, slots, store.CommittedSeq())
}

// slotKeys counts the keys in slots once the store applied atLeast.
func slotKeys(ctx context.Context, store *datastore.Store, slots []int, atLeast uint64) (uint64, error) {
	_, digests, err := store.SlotDigests(ctx, slots, atLeast)
	if err != nil {
		return 0, fmt.Errorf("slot digests: %w", err)
	}
	var keys uint64
	for _, d := range digests {
		keys += d.Keys
	}
	return keys, nil
}

// wireDigests converts the store's slot digests for a report.
func wireDigests(in []datastore.SlotDigest) []*wire.SlotDigest {
	out := make([]*wire.SlotDigest, len(in))
	for i, d := range in {
		out[i] = &wire.SlotDigest{Slot: uint32(d.Slot), Keys: d.Keys, Bytes: d.Bytes, Hash: d.Hash}
	}
	return out
}

// applyEvery paces the apply rounds a migration's target asks of its
// applier as it imports: often enough that the applied import position it
// reports trails little, rarely enough that the rounds' bbolt transactions
// (two fsyncs each) do not crowd the log's commits that writers wait on.
const applyEvery = 100 * time.Millisecond

// busyApplyEvery paces them instead while the group's clients write too:
// a round applies their writes along with the import, and a random
// client write dirties a leaf page, so rounds every applyEvery wrote a
// leaf many times in the seconds over which the applier's own rounds
// write it once. Spaced out, what the import leaves unapplied is a few
// seconds of the busy pace, and the round a caught-up copy asks for at
// once stays small.
const busyApplyEvery = 2 * time.Second

// applyPacer hurries the store's applier to the seqs it is asked for, one
// round at a time and at most one round every applyEvery (busyApplyEvery
// while the group's clients write), instead of leaving them to the
// applier's own batching delay. The rounds keep the applier's background
// priority, but for an urgent ask (a caught-up copy waits for it before
// its hold), which also skips the pause.
type applyPacer struct {
	asks   chan applyAsk
	urgent chan struct{}
}

// applyAsk is the newest ask: the seq to apply and whether the group's
// clients write too.
type applyAsk struct {
	seq  uint64
	busy bool
}

func newApplyPacer() *applyPacer {
	return &applyPacer{asks: make(chan applyAsk, 1), urgent: make(chan struct{}, 1)}
}

// ask asks for a round applying seq, at once if urgent, paced as busy
// says; it never blocks: an ask not yet taken is replaced by the newer one.
func (a *applyPacer) ask(seq uint64, urgent, busy bool) {
	for sent := false; !sent; {
		select {
		case a.asks <- applyAsk{seq: seq, busy: busy}:
			sent = true
		default:
			select {
			case old := <-a.asks:
				seq = max(seq, old.seq)
			default:
			}
		}
	}
	if urgent {
		select {
		case a.urgent <- struct{}{}:
		default:
		}
	}
}

// run makes the rounds asked for until ctx ends or the store fails (those
// who write to it see why).
func (a *applyPacer) run(ctx context.Context, store func() *datastore.Store) {
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		urgent := false
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		case <-a.urgent:
			urgent = true
		}
		var ask applyAsk
		select {
		case <-ctx.Done():
			return
		case ask = <-a.asks:
		}
		// ask sends the seq before the token: an urgent ask that woke an
		// idle pacer through asks is for this round.
		select {
		case <-a.urgent:
			urgent = true
		default:
		}
		if store().ApplyThrough(ctx, ask.seq, urgent) != nil {
			return
		}
		// An urgent ask made during the round is for what it did not apply.
		if ask.busy {
			pause.Reset(busyApplyEvery)
		} else {
			pause.Reset(applyEvery)
		}
	}
}

// errNotMigrating: the migration left the state a task works in.
var errNotMigrating = errors.New("the migration is no longer in copy or hold")
