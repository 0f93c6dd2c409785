package wire

import (
	"storj.io/drpc/drpcmanager"
	"storj.io/drpc/drpcwire"
)

// MaxMessageBytes bounds one message on a connection. A batch may carry many
// values of up to 4 MiB each, so it is well above dRPC's 4 MiB default; the
// senders cap their batches below it.
const MaxMessageBytes = 64 << 20

// ManagerOptions are the dRPC connection options both ends of every
// ThunderYurts connection use.
func ManagerOptions() drpcmanager.Options {
	return drpcmanager.Options{
		Reader:           drpcwire.ReaderOptions{MaximumBufferSize: MaxMessageBytes},
		WriterBufferSize: 64 << 10,
	}
}
