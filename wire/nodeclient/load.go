package nodeclient

import (
	"context"
	"fmt"

	"github.com/thunderyurts/thunderyurts/wire"
)

// Load asks the data node at addr, the primary of the group that owns
// every key's slot, to write items as one batch of a restore. It returns
// once the group's in-sync replicas hold them. A node that does not serve
// a key's slot refuses the whole batch, nothing of it written: the error
// matches wire.ErrMoved, wire.ErrNotPrimary or wire.ErrUnavailable, and
// the caller routes the batch again. Writing a batch twice leaves what
// writing it once does.
func (n Nodes) Load(ctx context.Context, addr string, items []*wire.KeyValue) error {
	conn, err := wire.Dial(ctx, addr, wire.DialOptions{TLS: n.TLS})
	if err != nil {
		return err
	}
	defer conn.Close()
	reply, err := wire.NewDRPCDataClient(conn).Load(ctx, &wire.LoadRequest{Items: items})
	if err == nil {
		err = wire.ErrorOf(reply.Code, reply.Message, reply.OwnerGroup, reply.TableVersion)
	}
	if err != nil {
		return fmt.Errorf("load into %s: %w", addr, wire.FromRPC(err))
	}
	return nil
}
