package datanode

import (
	"slices"
	"time"

	"github.com/thunderyurts/thunderyurts/daemon/ops"
)

// Request kinds, the values of the op label.
const (
	opGet = iota
	opPut
	opDelete
	opScan
)

var opNames = []string{"get", "put", "delete", "scan"}

// metrics are the node's Prometheus series (docs/metrics.md). Series that
// change per request are pre-resolved children, so counting allocates
// nothing.
type metrics struct {
	reg       *ops.Registry
	batches   ops.Counter
	batchSize ops.Histogram
	requests  []ops.Counter   // by op
	latency   []ops.Histogram // by op
	retries   ops.Counter
	// Slot migration: keys and bytes this node imported as a target,
	// requests it held as a source.
	migrateKeys  ops.Counter
	migrateBytes ops.Counter
	held         ops.Counter
	// Replication, counted on the primary: members dropped from and added
	// to the in-sync set.
	isrShrinks ops.Counter
	isrExpands ops.Counter
	// The store's group commits and apply rounds (datastore.Observer).
	fsync        ops.Histogram
	groupCommit  ops.Histogram
	applyTime    ops.Histogram
	applyEntries ops.Histogram
}

func newMetrics(n *Node) *metrics {
	reg := ops.NewRegistry()
	m := &metrics{
		reg:       reg,
		batches:   reg.Counter("thunder_data_batches_total", "Request batches received."),
		batchSize: reg.Histogram("thunder_data_batch_requests", "Requests per batch received.", ops.SizeBuckets),
		requests: reg.Counters("thunder_data_requests_total", "Requests routed to this node's role, by operation (scan: pages); not those refused before routing.",
			"op", opNames...),
		latency: reg.Histograms("thunder_data_request_duration_seconds",
			"Time from a request's arrival to its answer, by operation (writes: until every in-sync replica holds them).",
			"op", ops.LatencyBuckets, opNames...),
		retries: reg.Counter("thunder_data_write_retries_total", "Retried puts and deletes answered from their first attempt instead of written again."),
		migrateKeys: reg.Counter("thunder_data_migration_keys_copied_total",
			"Keys (snapshot records and log records) this node imported as a slot migration's target."),
		migrateBytes: reg.Counter("thunder_data_migration_bytes_copied_total",
			"Bytes of keys and values this node imported as a slot migration's target."),
		held: reg.Counter("thunder_data_migration_held_requests_total",
			"Requests this node held as a slot migration's source while the migration was in hold."),
		isrShrinks: reg.Counter("thunder_data_isr_shrinks_total", "Members this node, as primary, dropped from its group's in-sync set."),
		isrExpands: reg.Counter("thunder_data_isr_expands_total", "Members this node, as primary, added back to its group's in-sync set."),
		fsync:      reg.Histogram("thunder_data_wal_fsync_duration_seconds", "Time of one fdatasync of the write-ahead log.", ops.LatencyBuckets),
		groupCommit: reg.Histogram("thunder_data_wal_group_commit_entries",
			"Log entries made durable by one fdatasync of the write-ahead log (one or two group commits).", ops.SizeBuckets),
		applyTime: reg.Histogram("thunder_data_apply_duration_seconds", "Time of one apply round (log entries into the data file).", ops.LatencyBuckets),
		applyEntries: reg.Histogram("thunder_data_apply_entries", "Log entries written to the data file by one apply round.",
			ops.SizeBuckets),
	}
	gauges := []struct {
		name, help string
		value      func() float64
	}{
		{"thunder_data_migration_longest_hold_seconds", "The longest hold of a slot migration's requests on this node.",
			func() float64 { return n.mig.holds.longestHold().Seconds() }},
		{"thunder_data_last_seq", "Sequence number of the newest op-log entry.", func() float64 { return float64(n.store().LastSeq()) }},
		{"thunder_data_high_watermark", "Sequence number up to which the log is committed (held by every in-sync replica).",
			func() float64 { return float64(n.store().CommittedSeq()) }},
		{"thunder_data_applied_seq", "Sequence number up to which the log is applied to the data file; the committed entries after it are held in memory.",
			func() float64 { return float64(n.store().AppliedSeq()) }},
		{"thunder_data_epoch", "The group's epoch as this node knows it; it goes up at every change of primary.",
			func() float64 { return float64(epochOf(n.state.Load().group)) }},
		{"thunder_data_is_primary", "1 when this node is its group's primary.", func() float64 { return bool01(n.state.Load().isPrimary()) }},
		{"thunder_data_isr_size", "Members of the group's in-sync set, the primary included, as this node knows it.",
			func() float64 { return float64(len(n.isr())) }},
		{"thunder_data_under_replicated", "1 on a group's primary while its in-sync set is smaller than the replication factor; 0 elsewhere.",
			func() float64 { return bool01(n.state.Load().isPrimary() && len(n.isr()) < n.replication) }},
		{"thunder_data_file_bytes", "Size of the data file.", func() float64 { f, _, _ := n.store().DiskBytes(); return float64(f) }},
		{"thunder_data_wal_bytes", "Disk space of the write-ahead log segments.", func() float64 { _, w, _ := n.store().DiskBytes(); return float64(w) }},
	}
	for _, g := range gauges {
		reg.Gauge(g.name, g.help, g.value)
	}
	reg.GaugeSet("thunder_data_follower_lag_entries", "On a primary: log entries each member has yet to make durable.",
		[]string{"follower"}, func(emit func(float64, ...string)) {
			for _, f := range n.followerLags() {
				emit(float64(f.entries), f.id)
			}
		})
	reg.GaugeSet("thunder_data_follower_lag_seconds", "On a primary: how long since each member last held all the primary had then.",
		[]string{"follower"}, func(emit func(float64, ...string)) {
			for _, f := range n.followerLags() {
				emit(f.behind.Seconds(), f.id)
			}
		})
	return m
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// observe records count requests of op answered successfully after took.
func (m *metrics) observe(op, count int, took time.Duration) {
	s := took.Seconds()
	for range count {
		m.latency[op].Observe(s)
	}
}

// GroupCommit and Applied make metrics the store's datastore.Observer.
func (m *metrics) GroupCommit(entries int, fsync time.Duration) {
	m.fsync.Observe(fsync.Seconds())
	m.groupCommit.Observe(float64(entries))
}

func (m *metrics) Applied(entries int, took time.Duration) {
	m.applyTime.Observe(took.Seconds())
	m.applyEntries.Observe(float64(entries))
}

// isr is the group's in-sync set: the primary's own view while this node
// leads, else the last one read from ZooKeeper.
func (n *Node) isr() []string {
	st := n.state.Load()
	if st.primary != nil {
		st.primary.mu.Lock()
		defer st.primary.mu.Unlock()
		return slices.Clone(st.primary.isr)
	}
	if st.group == nil {
		return nil
	}
	return st.group.ISR
}

type followerLag struct {
	id      string
	entries uint64
	behind  time.Duration
}

// followerLags is the primary's view of each member's lag; none elsewhere.
func (n *Node) followerLags() []followerLag {
	p := n.state.Load().primary
	if p == nil {
		return nil
	}
	last := n.store().LastSeq()
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]followerLag, 0, len(p.members))
	for _, f := range p.members {
		out = append(out, followerLag{id: f.id, entries: last - min(f.acked, last), behind: max(0, now.Sub(f.caughtUpAt))})
	}
	return out
}
