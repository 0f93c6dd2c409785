package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"storj.io/drpc/drpcconn"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
	"github.com/thunderyurts/thunderyurts/wire/routewire"
)

// CoordinatorRoutes reads routes from the coordinators at addrs, trying
// each in turn; any coordinator, leader or standby, can answer. tlsConf,
// when set, makes the connections mutual TLS.
func CoordinatorRoutes(addrs []string, tlsConf *tls.Config) RouteSource {
	return coordinatorRoutes{addrs: addrs, tls: tlsConf}
}

type coordinatorRoutes struct {
	addrs []string
	tls   *tls.Config
}

func (cr coordinatorRoutes) Routes(ctx context.Context) (*coord.RouteTable, error) {
	if len(cr.addrs) == 0 {
		return nil, errors.New("no coordinator address given")
	}
	var errs []error
	for _, addr := range cr.addrs {
		routes, err := fetchRoutes(ctx, addr, cr.tls)
		if err == nil {
			return routewire.ToTable(routes), nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w: no coordinator answered: %w", ErrUnavailable, errors.Join(errs...))
}

func fetchRoutes(ctx context.Context, addr string, tlsConf *tls.Config) (*wire.Routes, error) {
	conn, err := dialConn(ctx, addr, tlsConf)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	routes, err := wire.NewDRPCRouteClient(conn).GetRoutes(ctx, &wire.RoutesRequest{})
	if err != nil {
		return nil, fmt.Errorf("coordinator %s: %w", addr, wire.FromRPC(err))
	}
	return routes, nil
}

// dialConn opens a connection for calls that are too rare to pool:
// routes, scans, status, handovers and dumps.
func dialConn(ctx context.Context, addr string, tlsConf *tls.Config) (*drpcconn.Conn, error) {
	conn, err := wire.Dial(ctx, addr, wire.DialOptions{Timeout: 2 * time.Second, TLS: tlsConf})
	if err != nil {
		return nil, &dialError{err}
	}
	return conn, nil
}
