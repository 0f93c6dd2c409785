package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"storj.io/drpc/drpcconn"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/wire"
)

// ScanOptions selects the keys Scan visits. The zero value visits every key.
type ScanOptions struct {
	// Prefix keeps only keys that start with it.
	Prefix []byte
	// Start is the first key visited (inclusive); nil means from the first key.
	Start []byte
	// End is where the scan stops (exclusive); nil means no upper bound.
	End []byte
	// Limit is the most keys visited; 0 means no limit.
	Limit int
	// PageSize is how many keys one request fetches from a node; 0 → 1000.
	PageSize int
}

// Scan calls fn for each key in [Start, End) with Prefix, in key order
// across the whole cluster, each key once. Keys are spread over the groups
// by hash, so Scan reads every group's keys in order and merges them. If a
// slot moves or a primary changes while it runs, Scan refreshes the routes
// and resumes after the last key it visited. An error from fn stops the scan
// and is returned as is.
func (c *Client) Scan(ctx context.Context, opts ScanOptions, fn func(key, value []byte) error) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	start, end := scanBounds(opts)
	if end != nil && bytes.Compare(start, end) >= 0 {
		return nil
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 1000
	}
	visited := 0
	var lastErr error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := c.backoff(ctx, attempt); err != nil {
				return fmt.Errorf("scan: %w: %w", ErrUnavailable, lastErr)
			}
		}
		rt := c.routes.Load()
		s := &scanner{ctx: ctx, tls: c.cfg.TLS, start: start, end: end, pageSize: opts.PageSize, limit: opts.Limit, visited: visited}
		err := s.run(rt, fn)
		start, visited = s.start, s.visited
		var fnErr *callbackError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &fnErr):
			return fnErr.err
		case errors.Is(err, wire.ErrMoved), errors.Is(err, wire.ErrNotPrimary), errors.Is(err, wire.ErrUnavailable), isDialError(err), isTransportError(err):
			lastErr = err
			c.refresh(ctx, rt.Table.Version)
		default:
			return fmt.Errorf("scan: %w", err)
		}
	}
}

// scanBounds folds Prefix into [start, end).
func scanBounds(opts ScanOptions) (start, end []byte) {
	start, end = opts.Start, opts.End
	if len(opts.Prefix) == 0 {
		return start, end
	}
	if bytes.Compare(start, opts.Prefix) < 0 {
		start = opts.Prefix
	}
	if pe := prefixEnd(opts.Prefix); pe != nil && (end == nil || bytes.Compare(pe, end) < 0) {
		end = pe
	}
	return start, end
}

// prefixEnd is the first key greater than every key with prefix p, or nil
// when there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// transportError marks a failed call on a connection, as opposed to an
// answer from the node.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

func isTransportError(err error) bool {
	var te *transportError
	return errors.As(err, &te)
}

// scanner runs one pass of a scan over a fixed route table.
type scanner struct {
	ctx      context.Context
	tls      *tls.Config
	start    []byte // next key to visit, inclusive
	end      []byte
	pageSize int
	limit    int
	visited  int
}

// groupCursor pages through one group's keys.
type groupCursor struct {
	group string
	conn  *drpcconn.Conn
	req   *wire.ScanRequest
	buf   []*wire.KeyValue
	more  bool
}

func (s *scanner) run(rt *coord.RouteTable, fn func(key, value []byte) error) error {
	var cursors []*groupCursor
	defer func() {
		for _, gc := range cursors {
			_ = gc.conn.Close()
		}
	}()
	byGroup := map[string][]*wire.SlotRange{}
	for _, rg := range rt.Table.Ranges() {
		if rg.Group == "" {
			return fmt.Errorf("%w: slots %d-%d are not assigned to any group", wire.ErrUnavailable, rg.From, rg.To)
		}
		byGroup[rg.Group] = append(byGroup[rg.Group], &wire.SlotRange{From: uint32(rg.From), To: uint32(rg.To), Group: rg.Group})
	}
	for name, ranges := range byGroup {
		g := rt.Groups[name]
		if g.PrimaryAddr == "" {
			return fmt.Errorf("%w: group %s has no reachable primary", wire.ErrUnavailable, name)
		}
		conn, err := dialConn(s.ctx, g.PrimaryAddr, s.tls)
		if err != nil {
			return err
		}
		gc := &groupCursor{group: name, conn: conn, more: true, req: &wire.ScanRequest{Slots: ranges, Start: s.start, End: s.end}}
		cursors = append(cursors, gc)
	}
	for s.limit <= 0 || s.visited < s.limit {
		var next *groupCursor
		for _, gc := range cursors {
			if len(gc.buf) == 0 && gc.more {
				if err := s.fill(gc); err != nil {
					return err
				}
			}
			if len(gc.buf) > 0 && (next == nil || bytes.Compare(gc.buf[0].Key, next.buf[0].Key) < 0) {
				next = gc
			}
		}
		if next == nil {
			return nil
		}
		kv := next.buf[0]
		next.buf = next.buf[1:]
		if err := fn(kv.Key, kv.Value); err != nil {
			return &callbackError{err}
		}
		s.visited++
		s.start = append(bytes.Clone(kv.Key), 0)
	}
	return nil
}

// fill fetches the next page of gc's group, starting after what the scan
// has already visited.
func (s *scanner) fill(gc *groupCursor) error {
	gc.req.Limit = uint32(s.pageSize)
	if s.limit > 0 {
		gc.req.Limit = uint32(min(s.pageSize, s.limit-s.visited))
	}
	reply, err := wire.NewDRPCDataClient(gc.conn).Scan(s.ctx, gc.req)
	if err != nil {
		return &transportError{fmt.Errorf("scan group %s: %w", gc.group, err)}
	}
	if err := wire.ErrorOf(reply.Code, reply.Message, reply.OwnerGroup, reply.TableVersion); err != nil {
		return fmt.Errorf("scan group %s: %w", gc.group, err)
	}
	gc.buf, gc.more = reply.Items, reply.More
	if n := len(reply.Items); n > 0 {
		gc.req.Start = append(bytes.Clone(reply.Items[n-1].Key), 0)
	}
	return nil
}
