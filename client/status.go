package client

import (
	"context"
	"fmt"
	"time"

	"github.com/thunderyurts/thunderyurts/wire"
)

// NodeStatus asks the data node at addr for its live status (role, keys,
// log position), for admin tools.
func NodeStatus(ctx context.Context, addr string) (*wire.NodeStatus, error) {
	conn, err := dialConn(ctx, addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	st, err := wire.NewDRPCDataClient(conn).Status(ctx, &wire.NodeStatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", addr, err)
	}
	return st, nil
}
