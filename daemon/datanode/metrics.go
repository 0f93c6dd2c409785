package datanode

import (
	"sync/atomic"

	"github.com/thunderyurts/thunderyurts/daemon/ops"
)

type metrics struct {
	reg     *ops.Registry
	batches *atomic.Uint64
	gets    *atomic.Uint64
	writes  *atomic.Uint64
	// Slot migration: keys and bytes this node imported as a target,
	// requests it held as a source.
	migrateKeys  *atomic.Uint64
	migrateBytes *atomic.Uint64
	held         *atomic.Uint64
	retries      *atomic.Uint64
}

func newMetrics(n *Node) *metrics {
	reg := ops.NewRegistry()
	m := &metrics{
		reg:     reg,
		batches: reg.Counter("thunder_data_batches_total", "Request batches received."),
		gets:    reg.Counter("thunder_data_gets_total", "Get requests served by this node as primary."),
		writes:  reg.Counter("thunder_data_writes_total", "Put and delete requests accepted for commit."),
		migrateKeys: reg.Counter("thunder_data_migration_keys_copied_total",
			"Keys (snapshot records and log records) this node imported as a slot migration's target."),
		migrateBytes: reg.Counter("thunder_data_migration_bytes_copied_total",
			"Bytes of keys and values this node imported as a slot migration's target."),
		held: reg.Counter("thunder_data_migration_held_requests_total",
			"Requests this node held as a slot migration's source while the migration was in hold."),
		retries: reg.Counter("thunder_data_write_retries_total", "Retried puts and deletes answered from their first attempt instead of written again."),
	}
	reg.Gauge("thunder_data_migration_longest_hold_seconds", "The longest hold of a slot migration's requests on this node.",
		func() float64 { return n.mig.holds.longestHold().Seconds() })
	reg.Gauge("thunder_data_last_seq", "Sequence number of the newest op-log entry.", func() float64 { return float64(n.store().LastSeq()) })
	reg.Gauge("thunder_data_is_primary", "1 when this node is its group's primary.", func() float64 {
		if n.state.Load().isPrimary() {
			return 1
		}
		return 0
	})
	return m
}
