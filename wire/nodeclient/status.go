package nodeclient

import (
	"context"
	"fmt"

	"github.com/thunderyurts/thunderyurts/wire"
)

// NodeStatus asks the data node at addr for its live status (role, keys,
// log position), for admin tools.
func NodeStatus(ctx context.Context, addr string) (*wire.NodeStatus, error) {
	return nodeStatus(ctx, addr, &wire.NodeStatusRequest{})
}

// NodeSlotCounts is NodeStatus with the keys and bytes of every slot the
// node's store holds keys in (NodeStatus.SlotCounts), whoever owns it.
func NodeSlotCounts(ctx context.Context, addr string) (*wire.NodeStatus, error) {
	return nodeStatus(ctx, addr, &wire.NodeStatusRequest{SlotCounts: true})
}

func nodeStatus(ctx context.Context, addr string, req *wire.NodeStatusRequest) (*wire.NodeStatus, error) {
	conn, err := wire.Dial(ctx, addr, 0)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	st, err := wire.NewDRPCDataClient(conn).Status(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", addr, err)
	}
	return st, nil
}

// Handover asks the primary at addr to hand its role to member to (empty:
// the most caught-up in-sync member) without losing an acknowledged write.
// epoch, when not 0, must be the group's current epoch.
func Handover(ctx context.Context, addr string, epoch uint64, to string) (*wire.HandoverReply, error) {
	conn, err := wire.Dial(ctx, addr, 0)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	reply, err := wire.NewDRPCDataClient(conn).Handover(ctx, &wire.HandoverRequest{Epoch: epoch, To: to})
	if err != nil {
		return nil, fmt.Errorf("handover at %s: %w", addr, wire.FromRPC(err))
	}
	return reply, nil
}
