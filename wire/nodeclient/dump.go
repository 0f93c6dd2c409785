package nodeclient

import (
	"context"
	"fmt"

	"github.com/thunderyurts/thunderyurts/wire"
)

// DumpCut is where a Dump's copy was cut: the group's log up to Seq,
// written in Epoch.
type DumpCut struct {
	Epoch, Seq uint64
}

// Dump asks the data node at addr for one consistent copy of slots, cut at
// a log position at or after minSeq. The node judges that its group owns
// the slots from a slot table at least at tableVersion (it refuses with
// STALE_EPOCH if its table stays older, MOVED if a slot is not its
// group's). It calls begin with the cut, then fn
// for every record in order (slot by slot as asked, key order within a
// slot); fn's arguments are its own to keep. Records arrive as fast as fn
// takes them: the node reads no further ahead than about one message. An
// error from begin or fn ends the dump and is returned as is.
func (n Nodes) Dump(ctx context.Context, addr string, slots []int, minSeq uint64, tableVersion int64, begin func(DumpCut) error, fn func(slot int, key, value []byte) error) error {
	conn, err := wire.Dial(ctx, addr, wire.DialOptions{TLS: n.TLS})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &wire.DumpRequest{MinSeq: minSeq, TableVersion: tableVersion, Slots: make([]uint32, len(slots))}
	for i, s := range slots {
		req.Slots[i] = uint32(s)
	}
	stream, err := wire.NewDRPCDataClient(conn).Dump(ctx, req)
	if err != nil {
		return fmt.Errorf("dump from %s: %w", addr, wire.FromRPC(err))
	}
	begun := false
	for {
		// A stream that ends before its end message fails with io.EOF.
		chunk, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("dump from %s: %w", addr, wire.FromRPC(err))
		}
		if cut := chunk.Cut; cut != nil && !begun {
			begun = true
			if err := begin(DumpCut{Epoch: cut.Epoch, Seq: cut.Seq}); err != nil {
				return err
			}
		}
		if !begun {
			return fmt.Errorf("dump from %s: records before the cut", addr)
		}
		for _, r := range chunk.Records {
			if err := fn(int(r.Slot), r.Key, r.Value); err != nil {
				return err
			}
		}
		if chunk.End {
			return nil
		}
	}
}
