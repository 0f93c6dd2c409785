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
	retries *atomic.Uint64
}

func newMetrics(n *Node) *metrics {
	reg := ops.NewRegistry()
	m := &metrics{
		reg:     reg,
		batches: reg.Counter("thunder_data_batches_total", "Request batches received."),
		gets:    reg.Counter("thunder_data_gets_total", "Get requests served by this node as primary."),
		writes:  reg.Counter("thunder_data_writes_total", "Put and delete requests accepted for commit."),
		retries: reg.Counter("thunder_data_write_retries_total", "Retried puts and deletes answered from their first attempt instead of written again."),
	}
	reg.Gauge("thunder_data_last_seq", "Sequence number of the newest op-log entry.", func() float64 { return float64(n.store().LastSeq()) })
	reg.Gauge("thunder_data_is_primary", "1 when this node is its group's primary.", func() float64 {
		if n.state.Load().isPrimary() {
			return 1
		}
		return 0
	})
	return m
}
