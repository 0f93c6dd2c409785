package wire

import (
	"google.golang.org/protobuf/proto"
	"storj.io/drpc"

	"github.com/thunderyurts/thunderyurts/wire/wirecodec"
)

// MarshalAppend lets dRPC encode into each stream's reused send buffer
// (drpcenc.MarshalAppend looks for it): protoc-gen-go-drpc generates it
// only for google.golang.org/protobuf, not for a protolib such as
// wirecodec.
func (drpcEncoding_File_thunder_proto) MarshalAppend(buf []byte, msg drpc.Message) ([]byte, error) {
	return wirecodec.MarshalAppend(buf, msg)
}

// RecvEntriesInto receives the next message of a replication stream into m,
// decoding into the memory of the entries m held (their structs and byte
// slices), which the caller must be done with. Decoding each message into
// new memory was a third of what a follower allocated.
func RecvEntriesInto(s DRPCData_ReplicateClient, m *PrimaryMessage) error { return recvInto(s, m) }

// RecvBatchInto receives the next batch of a client's stream into m, into
// the memory of the requests m held, as RecvEntriesInto does: a request
// kept past the next receive must be cloned (CloneRequest).
func RecvBatchInto(s DRPCData_StreamStream, m *Batch) error { return recvInto(s, m) }

// recvInto receives into m: the codec resets m with ResetVT, which keeps
// the memory of what m held.
func recvInto(s drpc.Stream, m interface {
	drpc.Message
	ResetVT()
}) error {
	return s.MsgRecv(m, drpcEncoding_File_thunder_proto{})
}

// BatchMemory is what a batch decoded into keeps for the next one: each
// of its requests keeps the capacity of the largest key and value it held.
func BatchMemory(b *Batch) int {
	n := 0
	for _, r := range b.Requests[:cap(b.Requests)] {
		if r != nil {
			n += cap(r.Key) + cap(r.Value)
		}
	}
	return n
}

// CloneRequest is a deep copy of r.
func CloneRequest(r *Request) *Request { return proto.Clone(r).(*Request) }
