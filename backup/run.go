package backup

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/internal/sysproc"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/nodeclient"
)

// RunConfig configures Run. Cluster and Store are required.
type RunConfig struct {
	Cluster *coord.Cluster
	Store   Store
	// Progress, when set, is called every 200ms and once at the end.
	Progress func(Progress)
	// ToolVersion is recorded in the manifest.
	ToolVersion string
	// Logger gets one line per group copied; nil → discard.
	Logger *slog.Logger
	// TLS, when set, makes the connections to the nodes mutual TLS.
	TLS *tls.Config
}

// Result is what a backup or restore did.
type Result struct {
	ID    string        `json:"id"`
	Slots int           `json:"slots"`
	Keys  int64         `json:"keys"`
	Bytes int64         `json:"bytes"` // keys and values
	Took  time.Duration `json:"took_ns"`
	// Groups is where each group was cut (backups only).
	Groups map[string]GroupPoint `json:"groups,omitempty"`
}

// maxClosing bounds the slot files of one copy being stored at once.
const maxClosing = 16

// cutTimeout bounds how long a member may take to start its copy (a
// secondary first waits to learn that the primary's commit point is
// committed) before Run asks the next member.
const cutTimeout = 10 * time.Second

// maxRounds bounds how often Run copies the slots that moved to another
// group while it copied them.
const maxRounds = 10

// Run backs the cluster up online into a new backup in cfg.Store. For
// each group it asks one in-sync member (a secondary when there is one, so
// the primary keeps its capacity for clients) for one consistent copy of
// all the group's slots, cut at one point of the group's log that includes
// every write the primary had committed when the copy started, and streams
// each slot into its file as it arrives. Once every file is written,
// Set.Finish reads them all back and writes the manifest last: only then
// does the backup list as complete. On error the backup stays incomplete
// (Prune removes it later); Result.ID names it.
//
// Slots may move between groups meanwhile (a rebalance): a member refuses
// (MOVED) slots its group no longer owns, and a copy is kept only if the
// slot table read after it still names the group that served it (a member
// whose table lagged the switch may have cut after its group dropped the
// slot). Slots not kept are copied again from their owner in the next
// round, after the table is read again; each slot's file is the copy of
// the last round that read it, so every slot is in the backup once.
//
// A backup is background work: its goroutines (receiving the copies,
// writing and hashing the files, syncing them, reading them back) run on
// threads of a lower CPU priority (sysproc.Background), so on a busy
// machine it slows down rather than take the cores from the clients'
// writes.
func Run(ctx context.Context, cfg RunConfig) (res Result, err error) {
	err = sysproc.Background(func() error {
		res, err = run(ctx, cfg)
		return err
	})
	return res, err
}

func run(ctx context.Context, cfg RunConfig) (Result, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now().UTC()
	cl := cfg.Cluster
	meta, err := cl.Meta(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("backup: %w", err)
	}
	routes, err := cl.Routes(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("backup: %w", err)
	}
	slotCount := len(routes.Table.Owners)
	set, err := NewSet(cfg.Store, NewID(start))
	if err != nil {
		return Result{}, err
	}
	res := Result{ID: set.ID(), Groups: map[string]GroupPoint{}}
	m := newMeter(slotCount, cfg.Progress)
	defer m.close()
	pending := make(map[int]bool, slotCount) // slots without a kept copy
	for slot := range slotCount {
		pending[slot] = true
	}
	for round := 1; ; round++ {
		served, err := copyRound(ctx, cl, nodeclient.Nodes{TLS: cfg.TLS}, set, routes, pending, slotCount, m, res.Groups, log)
		if err != nil {
			return res, fmt.Errorf("backup %s: %w", set.ID(), err)
		}
		if routes, err = cl.Routes(ctx); err != nil {
			return res, fmt.Errorf("backup %s: %w", set.ID(), err)
		}
		if n := len(routes.Table.Owners); n != slotCount {
			return res, fmt.Errorf("backup %s: the slot count changed from %d to %d", set.ID(), slotCount, n)
		}
		for slot, group := range served {
			if routes.Table.Owner(slot) == group {
				delete(pending, slot)
			}
		}
		if len(pending) == 0 {
			break
		}
		if round == maxRounds {
			return res, fmt.Errorf("backup %s: slots %s kept moving between groups through %d rounds of copies: run it again once the rebalance is done",
				set.ID(), slotList(pending), maxRounds)
		}
		log.Info("slots moved during the backup, copying them again", "backup", set.ID(), "slots", slotList(pending), "table_version", routes.Table.Version)
	}
	man := &Manifest{Cluster: meta.Name, SlotCount: slotCount, SlotTableVersion: routes.Table.Version,
		Start: start, ToolVersion: cfg.ToolVersion, Groups: res.Groups}
	if err := set.Finish(ctx, man); err != nil {
		return res, err
	}
	m.close()
	// From the manifest: the meter counted slots copied more than once.
	res.Slots, res.Keys, res.Bytes, res.Took = len(man.Slots), man.Keys(), man.Bytes(), time.Since(start)
	return res, nil
}

// copyRound copies the pending slots from the groups that own them in
// routes, the groups at once, each from its own member, and records each
// group's cut in points. It returns which group served each slot copied;
// a group that refuses with MOVED (the table changed since routes was
// read) leaves its slots out.
func copyRound(ctx context.Context, cl *coord.Cluster, nodes nodeclient.Nodes, set *Set, routes *coord.RouteTable, pending map[int]bool, slotCount int, m *meter, points map[string]GroupPoint, log *slog.Logger) (map[int]string, error) {
	slotsOf := map[string][]int{}
	for slot := range slotCount {
		if !pending[slot] {
			continue
		}
		owner := routes.Table.Owner(slot)
		if owner == "" {
			return nil, fmt.Errorf("slot %d has no owner yet: wait until the cluster serves every slot", slot)
		}
		slotsOf[owner] = append(slotsOf[owner], slot)
	}
	list, err := cl.Groups(ctx)
	if err != nil {
		return nil, err
	}
	groups := map[string]*coord.Group{}
	for _, g := range list {
		groups[g.Name] = g
	}
	gctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	var wg sync.WaitGroup
	served := map[int]string{}
	for name, slots := range slotsOf {
		g := groups[name]
		if g == nil {
			return nil, fmt.Errorf("slots %v: owner group %s is not in the cluster", slots, name)
		}
		wg.Add(1)
		sysproc.GoBackground(func() {
			defer wg.Done()
			pt, err := copyGroup(gctx, nodes, set, g, routes.Groups[name], slots, slotCount, routes.Table.Version, m)
			if errors.Is(err, wire.ErrMoved) {
				log.Info("group refused moved slots", "backup", set.ID(), "group", name, "err", err)
				return
			}
			if err != nil {
				cancel(fmt.Errorf("group %s: %w", name, err))
				return
			}
			mu.Lock()
			points[name] = pt
			for _, slot := range slots {
				served[slot] = name
			}
			mu.Unlock()
			log.Info("group copied", "backup", set.ID(), "group", name, "node", pt.Node, "epoch", pt.Epoch, "seq", pt.Sequence, "slots", len(slots))
		})
	}
	wg.Wait()
	if err := context.Cause(gctx); err != nil {
		return nil, err
	}
	return served, nil
}

// slotList lists slots in order, runs of them as ranges: "3-5,9".
func slotList(slots map[int]bool) string {
	var b strings.Builder
	sorted := slices.Sorted(maps.Keys(slots))
	for i := 0; i < len(sorted); {
		j := i
		for j+1 < len(sorted) && sorted[j+1] == sorted[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j == i {
			fmt.Fprintf(&b, "%d", sorted[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", sorted[i], sorted[j])
		}
		i = j + 1
	}
	return b.String()
}

// copyGroup copies slots of group g from one in-sync member, trying the
// next when one refuses before its copy starts; members judge that g owns
// the slots from a slot table at least at tableVersion. A copy that fails once
// started fails the backup: its slot files are partly written.
func copyGroup(ctx context.Context, nodes nodeclient.Nodes, set *Set, g *coord.Group, route coord.GroupRoute, slots []int, slotCount int, tableVersion int64, m *meter) (GroupPoint, error) {
	addr := map[string]string{}
	for _, mem := range route.Members {
		addr[mem.ID] = mem.Addr
	}
	if g.Primary == "" || addr[g.Primary] == "" {
		return GroupPoint{}, errors.New("no primary: wait for the failover to finish")
	}
	// What the primary has committed now is the least the copy holds:
	// every write acknowledged before the backup started.
	sctx, cancel := context.WithTimeout(ctx, cutTimeout)
	st, err := nodes.NodeStatus(sctx, addr[g.Primary])
	cancel()
	if err != nil {
		return GroupPoint{}, fmt.Errorf("primary %s: %w", g.Primary, err)
	}
	var sources []string
	for _, id := range g.ISR {
		if id != g.Primary && addr[id] != "" {
			sources = append(sources, id)
		}
	}
	sources = append(sources, g.Primary)
	var errs []error
	for _, id := range sources {
		pt, started, err := copyFrom(ctx, nodes, set, g.Name, id, addr[id], slots, slotCount, st.CommittedSeq, tableVersion, m)
		if err == nil {
			return pt, nil
		}
		// MOVED: the table changed since it was read; the other members
		// judge from the same table.
		if started || ctx.Err() != nil || errors.Is(err, wire.ErrMoved) {
			return GroupPoint{}, err
		}
		errs = append(errs, fmt.Errorf("node %s: %w", id, err))
	}
	return GroupPoint{}, errors.Join(errs...)
}

// copyFrom streams the copy served by node id into the slots' files; each
// slot file is written by Set.WriteSlot in a goroutine of its own, fed
// chunks of records, so the copy goes at the pace the store takes it.
// started reports whether the copy had begun when it failed.
func copyFrom(ctx context.Context, nodes nodeclient.Nodes, set *Set, group, id, addr string, slots []int, slotCount int, minSeq uint64, tableVersion int64, m *meter) (pt GroupPoint, started bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	slow := time.AfterFunc(cutTimeout, func() { cancel(fmt.Errorf("no copy within %s", cutTimeout)) })
	defer slow.Stop()
	var hdr SlotHeader
	var cur *slotFeed
	// Slot files being stored while the next ones fill: small slots would
	// otherwise wait for their file to be stored one by one.
	var closing []*slotFeed
	settle := func(keep int) error {
		for len(closing) > keep {
			f := closing[0]
			closing = closing[1:]
			if err := f.wait(); err != nil {
				return err
			}
			m.slots.Add(1)
		}
		return nil
	}
	defer func() {
		for _, f := range closing {
			f.abort(errors.New("copy ended"))
		}
	}()
	next := 0 // index in slots of the next slot to open
	// advance ends the slot being written and starts the files of the
	// slots up to slot (those between hold no keys).
	advance := func(slot int) error {
		for cur == nil || cur.slot != slot {
			if cur != nil {
				cur.end()
				closing, cur = append(closing, cur), nil
				if err := settle(maxClosing); err != nil {
					return err
				}
			}
			if next == len(slots) {
				if slot < 0 {
					return settle(0)
				}
				return fmt.Errorf("node %s sent slot %d out of order", id, slot)
			}
			h := hdr
			h.Slot = slots[next]
			next++
			cur = startSlot(ctx, set, h)
		}
		return nil
	}
	begin := func(cut nodeclient.DumpCut) error {
		slow.Stop()
		started = true
		pt = GroupPoint{Epoch: cut.Epoch, Sequence: cut.Seq, Node: id}
		hdr = SlotHeader{Slots: slotCount, Group: group, Epoch: cut.Epoch, Sequence: cut.Seq}
		return nil
	}
	err = nodes.Dump(ctx, addr, slots, minSeq, tableVersion, begin, func(slot int, key, value []byte) error {
		if err := advance(slot); err != nil {
			return err
		}
		if err := cur.add(key, value); err != nil {
			return err
		}
		m.add(len(key), len(value))
		return nil
	})
	if err == nil {
		err = advance(-1) // the rest of the slots, empty
	}
	if cur != nil {
		cur.abort(fmt.Errorf("copy from node %s failed: %w", id, err))
	}
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = fmt.Errorf("%w: %w", cause, err)
	}
	return pt, started, err
}

// feedChunk is how many records a slotFeed hands over at once: one
// channel operation per chunk rather than per record.
const feedChunk = 256

// slotFeed is one slot file being written: records go to Set.WriteSlot's
// fill through a channel, in chunks; chunks written come back for reuse.
type slotFeed struct {
	slot   int
	buf    [][2][]byte // the chunk being filled
	chunks chan [][2][]byte
	free   chan [][2][]byte
	cancel context.CancelCauseFunc
	ended  chan struct{} // WriteSlot returned; err is set
	err    error
}

func startSlot(ctx context.Context, set *Set, hdr SlotHeader) *slotFeed {
	ctx, cancel := context.WithCancelCause(ctx)
	f := &slotFeed{slot: hdr.Slot, buf: make([][2][]byte, 0, feedChunk), chunks: make(chan [][2][]byte, 2), free: make(chan [][2][]byte, 3),
		cancel: cancel, ended: make(chan struct{})}
	sysproc.GoBackground(func() { // owned by the feed: finish or abort waits for it
		defer close(f.ended)
		_, f.err = set.WriteSlot(ctx, hdr, func(add func(key, value []byte) error) error {
			for {
				select {
				case chunk, ok := <-f.chunks:
					if !ok {
						return nil
					}
					for _, r := range chunk {
						if err := add(r[0], r[1]); err != nil {
							return err
						}
					}
					clear(chunk) // let the records go
					select {
					case f.free <- chunk[:0]:
					default:
					}
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			}
		})
	})
	return f
}

// add hands a record to the file; it waits while the store is slower.
func (f *slotFeed) add(key, value []byte) error {
	f.buf = append(f.buf, [2][]byte{key, value})
	if len(f.buf) < feedChunk {
		return nil
	}
	return f.flush()
}

// flush hands the records gathered over.
func (f *slotFeed) flush() error {
	if len(f.buf) == 0 {
		return nil
	}
	select {
	case f.chunks <- f.buf:
	case <-f.ended:
		return f.err
	}
	select {
	case f.buf = <-f.free:
	default:
		f.buf = make([][2][]byte, 0, feedChunk)
	}
	return nil
}

// end says the file has all its records; wait waits until it is stored.
// A flush that fails is reported by wait.
func (f *slotFeed) end() {
	_ = f.flush()
	close(f.chunks)
}

func (f *slotFeed) wait() error {
	<-f.ended
	f.cancel(nil)
	return f.err
}

// abort gives the file up: it is not recorded in the backup.
func (f *slotFeed) abort(cause error) {
	f.cancel(cause)
	<-f.ended
}
