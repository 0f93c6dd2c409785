package nodeclient

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/thunderyurts/thunderyurts/wire"
)

// Nodes makes the calls admin tools and daemons address to one data node
// at a time (status, handover, dump), each on a connection of its own.
// The zero value dials plain TCP.
type Nodes struct {
	// TLS, when set, makes the connections mutual TLS
	// (tlsauth.Certs.ClientConfig).
	TLS *tls.Config
}

// NodeStatus asks the data node at addr for its live status (role, keys,
// log position), for admin tools.
func (n Nodes) NodeStatus(ctx context.Context, addr string) (*wire.NodeStatus, error) {
	return n.nodeStatus(ctx, addr, &wire.NodeStatusRequest{})
}

// NodeSlotCounts is NodeStatus with the keys and bytes of every slot the
// node's store holds keys in (NodeStatus.SlotCounts), whoever owns it.
func (n Nodes) NodeSlotCounts(ctx context.Context, addr string) (*wire.NodeStatus, error) {
	return n.nodeStatus(ctx, addr, &wire.NodeStatusRequest{SlotCounts: true})
}

func (n Nodes) nodeStatus(ctx context.Context, addr string, req *wire.NodeStatusRequest) (*wire.NodeStatus, error) {
	conn, err := wire.Dial(ctx, addr, wire.DialOptions{TLS: n.TLS})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	st, err := wire.NewDRPCDataClient(conn).Status(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", addr, wire.FromRPC(err))
	}
	return st, nil
}

// Handover asks the primary at addr to hand its role to member to (empty:
// the most caught-up in-sync member) without losing an acknowledged write.
// epoch, when not 0, must be the group's current epoch.
func (n Nodes) Handover(ctx context.Context, addr string, epoch uint64, to string) (*wire.HandoverReply, error) {
	conn, err := wire.Dial(ctx, addr, wire.DialOptions{TLS: n.TLS})
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
