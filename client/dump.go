package client

import (
	"context"
	"fmt"
	"time"

	"github.com/thunderyurts/thunderyurts/wire"
)

// DumpCut is where a Dump's copy was cut: the group's log up to Seq,
// written in Epoch.
type DumpCut struct {
	Epoch, Seq uint64
}

// Dump asks the data node at addr for one consistent copy of slots, cut at
// a log position at or after minSeq, and calls fn for every record in
// order (slot by slot as asked, key order within a slot). fn's arguments
// are its own to keep. Records arrive as fast as fn takes them: the node
// reads no further ahead than one message. An error from fn ends the dump
// and is returned as is.
func Dump(ctx context.Context, addr string, slots []int, minSeq uint64, fn func(slot int, key, value []byte) error) (DumpCut, error) {
	conn, err := dialConn(ctx, addr, 2*time.Second)
	if err != nil {
		return DumpCut{}, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &wire.DumpRequest{MinSeq: minSeq, Slots: make([]uint32, len(slots))}
	for i, s := range slots {
		req.Slots[i] = uint32(s)
	}
	stream, err := wire.NewDRPCDataClient(conn).Dump(ctx, req)
	if err != nil {
		return DumpCut{}, fmt.Errorf("dump from %s: %w", addr, wire.FromRPC(err))
	}
	for {
		// A stream that ends before its End message fails with io.EOF.
		chunk, err := stream.Recv()
		if err != nil {
			return DumpCut{}, fmt.Errorf("dump from %s: %w", addr, wire.FromRPC(err))
		}
		for _, r := range chunk.Records {
			if err := fn(int(r.Slot), r.Key, r.Value); err != nil {
				return DumpCut{}, err
			}
		}
		if end := chunk.End; end != nil {
			return DumpCut{Epoch: end.Epoch, Seq: end.Seq}, nil
		}
	}
}
