package wire

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/thunderyurts/thunderyurts/wire/wirecodec"
)

// A replication message decoded into the last one's memory (as
// RecvEntriesInto does, through the codec) equals the message sent,
// whatever the last one held: no field of an earlier entry is left behind.
// (Whether its entries' memory was reused is up to sync.Pool, which the
// race detector makes drop items.)
func TestEntriesDecodedIntoReusedMessage(t *testing.T) {
	a := &PrimaryMessage{Epoch: 3, Committed: 9, Body: &PrimaryMessage_Entries{Entries: &Entries{Entries: []*LogEntry{
		{Seq: 10, Epoch: 3, Slot: 7, Key: []byte("key-a"), Value: []byte("a long value"), ClientId: 5, ClientSeq: 1},
		{Seq: 11, Epoch: 3, Slot: 8, Key: []byte("key-b"), Value: []byte("b"), Mark: true},
		{Seq: 12, Epoch: 3, Slot: 9, DropSlot: true},
	}}}}
	b := &PrimaryMessage{Epoch: 4, Body: &PrimaryMessage_Entries{Entries: &Entries{Entries: []*LogEntry{
		{Seq: 13, Epoch: 4, Slot: 1, Key: []byte("k"), Delete: true},
	}}}}
	c := &PrimaryMessage{Epoch: 4, Body: &PrimaryMessage_Truncate{Truncate: &Truncate{After: 12}}}
	m := &PrimaryMessage{}
	for i, want := range []*PrimaryMessage{a, b, a, c, b} {
		decodeInto(t, want, m)
		if !proto.Equal(m, want) {
			t.Fatalf("message %d decoded as %v, want %v", i, m, want)
		}
	}
}

// A batch decoded into the last one's memory (RecvBatchInto) equals the
// batch sent, and its requests are decoded into the last one's.
func TestBatchDecodedIntoReusedMessage(t *testing.T) {
	a := &Batch{Requests: []*Request{
		{Id: 1, Op: Op_PUT, Key: []byte("key-a"), Value: []byte("a long value"), ClientId: 5, ClientSeq: 1},
		{Id: 2, Op: Op_GET, Key: []byte("key-b"), StaleOk: true},
		{Id: 3, Op: Op_PING},
	}}
	b := &Batch{Requests: []*Request{{Id: 4, Op: Op_DELETE, Key: []byte("k")}}}
	m := &Batch{}
	var first *Request
	for i, want := range []*Batch{a, b, a, b} {
		decodeInto(t, want, m)
		if !proto.Equal(m, want) {
			t.Fatalf("batch %d decoded as %v, want %v", i, m, want)
		}
		if first == nil {
			first = m.Requests[0]
		} else if m.Requests[0] != first {
			t.Fatalf("batch %d: its first request was decoded into new memory", i)
		}
	}
}

// BatchMemory counts what a reused batch keeps: the capacity of the
// largest key and value each request slot held, also once a smaller batch
// was decoded into it.
func TestBatchMemoryCountsWhatIsKept(t *testing.T) {
	big := &Batch{Requests: []*Request{{Id: 1, Op: Op_PUT, Key: []byte("k"), Value: make([]byte, 100_000)}, {Id: 2, Op: Op_PING}}}
	small := &Batch{Requests: []*Request{{Id: 3, Op: Op_GET, Key: []byte("k")}}}
	m := &Batch{}
	for _, b := range []*Batch{big, small} {
		decodeInto(t, b, m)
		if got := BatchMemory(m); got < 100_000 {
			t.Fatalf("after a batch of %d requests BatchMemory is %d, want at least the 100,000-byte value kept", len(b.Requests), got)
		}
	}
}

// decodeInto encodes msg and decodes it into m, as a stream reusing m does.
func decodeInto(t *testing.T, msg, m proto.Message) {
	t.Helper()
	buf, err := wirecodec.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := wirecodec.Unmarshal(buf, m); err != nil {
		t.Fatal(err)
	}
}
