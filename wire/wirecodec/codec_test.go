package wirecodec_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/wirecodec"
)

// The fast codec and google.golang.org/protobuf read each other's bytes.
func TestInteroperates(t *testing.T) {
	msgs := []proto.Message{
		&wire.PrimaryMessage{Epoch: 7, Committed: 41, Body: &wire.PrimaryMessage_Entries{Entries: &wire.Entries{Entries: []*wire.LogEntry{
			{Seq: 41, Epoch: 7, Slot: 3, Key: []byte("k"), Value: []byte("v"), ClientId: 9, ClientSeq: 1},
			{Seq: 42, Epoch: 7, Slot: 4, Key: []byte("gone"), Delete: true},
		}}}},
		&wire.BatchReply{Responses: []*wire.Response{{Id: 1, Value: []byte("x")}, {Id: 2, Code: wire.Code_MOVED, Message: "moved", OwnerGroup: "g2", TableVersion: 3}}},
		&wire.FollowerMessage{Body: &wire.FollowerMessage_Hello{Hello: &wire.Hello{Group: "g1", NodeId: "data-g1-2", Epoch: 3, LastSeq: 10}}},
		// A heartbeat: an empty Entries must arrive as one, not as no body.
		&wire.PrimaryMessage{Epoch: 7, Committed: 42, Body: &wire.PrimaryMessage_Entries{Entries: &wire.Entries{}}},
		&wire.PrimaryMessage{Epoch: 7, Body: &wire.PrimaryMessage_SnapshotBegin{SnapshotBegin: &wire.SnapshotBegin{}}},
		&wire.NodeStatus{Id: "data-g1-1", Group: "g1", Isr: []string{"data-g1-1", "data-g1-2"}},
	}
	for _, m := range msgs {
		fast, err := wirecodec.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		back := m.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(fast, back); err != nil || !proto.Equal(m, back) {
			t.Fatalf("%T encoded by the codec, decoded by protobuf: %v, %v", m, back, err)
		}
		std, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		// Into a message that held something: it is replaced, not merged.
		back = proto.Clone(m)
		if err := wirecodec.Unmarshal(std, back); err != nil || !proto.Equal(m, back) {
			t.Fatalf("%T encoded by protobuf, decoded by the codec: %v, %v", m, back, err)
		}
		appended, err := wirecodec.MarshalAppend([]byte("head"), m)
		if err != nil || string(appended[:4]) != "head" || string(appended[4:]) != string(fast) {
			t.Fatalf("%T appended: %q, %v", m, appended, err)
		}
	}
}

// Every message of the protocol has vtprotobuf's methods: a `make proto`
// without the plugin would fall back to the slower path unnoticed.
func TestEveryMessageIsFast(t *testing.T) {
	type vt interface {
		SizeVT() int
		MarshalToSizedBufferVT([]byte) (int, error)
		UnmarshalVT([]byte) error
	}
	msgs := wire.File_thunder_proto.Messages()
	for i := range msgs.Len() {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(msgs.Get(i).FullName())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := mt.New().Interface().(vt); !ok {
			t.Errorf("%s has no vtprotobuf methods: run make proto with make deps' plugins", msgs.Get(i).FullName())
		}
	}
}

// A string that is not UTF-8 is refused at any depth, as protobuf does;
// bytes fields may hold anything.
func TestRefusesInvalidUTF8(t *testing.T) {
	bad := string([]byte{0xff, 0xfe})
	// BatchReply.responses (1) → Response.message (4).
	resp := protowire.AppendTag(nil, 4, protowire.BytesType)
	resp = protowire.AppendString(resp, bad)
	reply := protowire.AppendTag(nil, 1, protowire.BytesType)
	reply = protowire.AppendBytes(reply, resp)
	err := wirecodec.Unmarshal(reply, &wire.BatchReply{})
	if err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("a reply with an invalid message string: %v", err)
	}
	if proto.Unmarshal(reply, &wire.BatchReply{}) == nil {
		t.Fatal("protobuf accepted it: the test's bytes are wrong")
	}
	// Response.value (3) is bytes.
	resp = protowire.AppendTag(nil, 3, protowire.BytesType)
	resp = protowire.AppendString(resp, bad)
	reply = protowire.AppendTag(nil, 1, protowire.BytesType)
	reply = protowire.AppendBytes(reply, resp)
	var ok wire.BatchReply
	if err := wirecodec.Unmarshal(reply, &ok); err != nil || string(ok.Responses[0].Value) != bad {
		t.Fatalf("a reply with binary value: %v, %v", ok.Responses, err)
	}
}

// Truncated or malformed bytes are an error, never a panic.
func TestMalformed(t *testing.T) {
	good, err := wirecodec.Marshal(&wire.PrimaryMessage{Epoch: 1, Body: &wire.PrimaryMessage_Entries{Entries: &wire.Entries{Entries: []*wire.LogEntry{{Seq: 1, Key: []byte("key"), Value: []byte("value")}}}}})
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n < len(good); n++ {
		_ = wirecodec.Unmarshal(good[:n], &wire.PrimaryMessage{})
	}
	if err := wirecodec.Unmarshal([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, &wire.PrimaryMessage{}); err == nil {
		t.Fatal("a length past the end was accepted")
	}
}

// A replication message of 64 entries of 100-byte values, as a primary
// ships one, encoded into a reused buffer (as dRPC sends) and decoded: the
// codec against google.golang.org/protobuf.
func BenchmarkEntries(b *testing.B) {
	entries := make([]*wire.LogEntry, 64)
	for i := range entries {
		entries[i] = &wire.LogEntry{Seq: uint64(1000 + i), Epoch: 3, Slot: uint32(i), Key: []byte("key-0000000000001"), Value: make([]byte, 100), ClientId: 77, ClientSeq: uint64(i)}
	}
	msg := &wire.PrimaryMessage{Epoch: 3, Committed: 999, Body: &wire.PrimaryMessage_Entries{Entries: &wire.Entries{Entries: entries}}}
	buf, _ := proto.Marshal(msg)
	b.Run("codec", func(b *testing.B) {
		var out []byte
		for b.Loop() {
			var err error
			if out, err = wirecodec.MarshalAppend(out[:0], msg); err != nil {
				b.Fatal(err)
			}
			if err := wirecodec.Unmarshal(buf, &wire.PrimaryMessage{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protobuf", func(b *testing.B) {
		var out []byte
		for b.Loop() {
			var err error
			if out, err = (proto.MarshalOptions{}).MarshalAppend(out[:0], msg); err != nil {
				b.Fatal(err)
			}
			if err := proto.Unmarshal(buf, &wire.PrimaryMessage{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
