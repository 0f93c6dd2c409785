package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"storj.io/drpc/drpcconn"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/routewire"
)

// CoordinatorRoutes reads routes from the coordinators at addrs, trying
// each in turn; any coordinator, leader or standby, can answer.
func CoordinatorRoutes(addrs []string) RouteSource { return coordinatorRoutes(addrs) }

type coordinatorRoutes []string

func (addrs coordinatorRoutes) Routes(ctx context.Context) (*coord.RouteTable, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no coordinator address given")
	}
	var errs []error
	for _, addr := range addrs {
		routes, err := fetchRoutes(ctx, addr)
		if err == nil {
			return routewire.ToTable(routes), nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w: no coordinator answered: %w", ErrUnavailable, errors.Join(errs...))
}

func fetchRoutes(ctx context.Context, addr string) (*wire.Routes, error) {
	conn, err := dialConn(ctx, addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	routes, err := wire.NewDRPCRouteClient(conn).GetRoutes(ctx, &wire.RoutesRequest{})
	if err != nil {
		return nil, fmt.Errorf("coordinator %s: %w", addr, err)
	}
	return routes, nil
}

// dialConn opens a connection for unary calls that are too rare to pool:
// routes, scans, status.
func dialConn(ctx context.Context, addr string, timeout time.Duration) (*drpcconn.Conn, error) {
	conn, err := wire.Dial(ctx, addr, timeout)
	if err != nil {
		return nil, &dialError{err}
	}
	return conn, nil
}
