package coord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/thunderyurts/thunderyurts/internal/clock"
)

// Candidate is one participant in a leader election held in a directory: an
// ephemeral sequential node whose place in the sequence is its place in line;
// the lowest leads. A Candidate that stopped participating (it resigned, its
// session was in doubt, its wait failed) removes its node in the background
// until that succeeds or the Conn is closed, so a stale node never blocks the
// line. The zero value is not usable; call Campaign.
type Candidate struct {
	conn    Conn
	dir     string
	token   string          // unique prefix of the node's name
	name    string          // node name within dir
	session <-chan struct{} // the session the node belongs to

	resign     chan struct{}
	resignOnce sync.Once
	retireOnce sync.Once
}

// CandidateInfo is one node of an election directory.
type CandidateInfo struct {
	Name string // node name within the directory
	Data []byte
}

// Campaign enters the election in dir (created if missing) with data, which
// Candidates shows to everyone (who the candidate is, where to reach it).
// It returns as soon as the candidate stands in line; WaitForLeadership waits
// for its turn. A candidate lives until Resign, until its session ends or is
// in doubt, or until its node is deleted; after that, campaign afresh.
func Campaign(ctx context.Context, conn Conn, dir string, data []byte) (*Candidate, error) {
	if err := ValidatePath(dir); err != nil {
		return nil, fmt.Errorf("campaign in %s: %w", dir, err)
	}
	token, err := newToken()
	if err != nil {
		return nil, fmt.Errorf("campaign in %s: %w", dir, err)
	}
	c := &Candidate{
		conn:    conn,
		dir:     dir,
		token:   token,
		session: conn.SessionDone(),
		resign:  make(chan struct{}),
	}
	path, err := conn.CreateEphemeralSequential(ctx, JoinPath(dir, token+"-"), data)
	if err != nil {
		// The node may exist even though no answer came back (connection lost
		// mid-call); left there it would block the line for as long as the
		// session lives.
		c.retire()
		return nil, fmt.Errorf("campaign in %s: %w", dir, err)
	}
	_, c.name = ParentPath(path)
	return c, nil
}

// Name is the candidate's node name within the election directory.
func (c *Candidate) Name() string { return c.name }

func (c *Candidate) path() string { return JoinPath(c.dir, c.name) }

// WaitForLeadership blocks until the candidate leads, watching only the
// candidate just ahead of it (no herd effect when the leader goes). It returns
// a context, derived from ctx, that is cancelled at once when leadership ends:
// the session ends or is in doubt (context.Cause is ErrSessionLost), the
// candidate's node disappears (ErrNoNode), or Resign is called (ErrResigned).
// When ctx ends first, WaitForLeadership returns ctx's error and the candidate
// keeps its place (wait again or Resign). Any other error means the candidate
// is finished (its node is being removed): campaign afresh.
func (c *Candidate) WaitForLeadership(ctx context.Context) (context.Context, error) {
	for {
		pred, err := c.predecessor(ctx)
		if err == nil && pred == "" {
			return c.lead(ctx)
		}
		if err == nil {
			err = c.waitGone(ctx, pred)
		}
		if err != nil {
			return nil, c.fail(ctx, err)
		}
	}
}

// predecessor returns the name of the candidate just ahead, "" if c leads.
func (c *Candidate) predecessor(ctx context.Context) (string, error) {
	select {
	case <-c.session:
		return "", ErrSessionLost
	case <-c.resign:
		return "", ErrResigned
	default:
	}
	names, err := c.conn.Children(ctx, c.dir)
	if err != nil {
		return "", err
	}
	line := inLine(names)
	i := slices.Index(line, c.name)
	switch {
	case i < 0:
		return "", fmt.Errorf("candidate %s: %w", c.path(), ErrNoNode)
	case i == 0:
		return "", nil
	}
	return line[i-1], nil
}

// waitGone returns when the node pred is gone or its watch ended.
func (c *Candidate) waitGone(ctx context.Context, pred string) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, events, err := c.conn.Watch(wctx, JoinPath(c.dir, pred))
	if errors.Is(err, ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok || ev.Err != nil {
				return nil // look again: gone, or the session check will say why
			}
		case <-c.session:
			return ErrSessionLost
		case <-c.resign:
			return ErrResigned
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *Candidate) lead(ctx context.Context) (context.Context, error) {
	leaderCtx, cancel := context.WithCancelCause(ctx)
	_, events, err := c.conn.Watch(leaderCtx, c.path())
	if err != nil {
		cancel(err)
		return nil, c.fail(ctx, err)
	}
	go func() {
		for {
			select {
			case <-leaderCtx.Done():
				return
			case <-c.session:
				cancel(ErrSessionLost)
				c.retire()
				return
			case <-c.resign:
				cancel(ErrResigned)
				return
			case ev, ok := <-events:
				if !ok {
					events = nil // closed because leaderCtx ended
					continue
				}
				if ev.Err != nil {
					select {
					case <-c.resign: // Resign deleted the node: say so
						cancel(ErrResigned)
						return
					default:
					}
					cancel(fmt.Errorf("leader node %s: %w", c.path(), ev.Err))
					if !errors.Is(ev.Err, ErrNoNode) {
						c.retire()
					}
					return
				}
			}
		}
	}()
	return leaderCtx, nil
}

func (c *Candidate) fail(ctx context.Context, err error) error {
	if ctx.Err() == nil || errors.Is(err, ErrSessionLost) {
		c.retire()
	}
	return fmt.Errorf("wait for leadership in %s: %w", c.dir, err)
}

// Resign leaves the election: a leader's context is cancelled at once, then
// the candidate's node is deleted. When the delete fails (the error is
// returned) it is retried in the background. Resign is idempotent.
func (c *Candidate) Resign(ctx context.Context) error {
	c.resignOnce.Do(func() { close(c.resign) })
	err := c.conn.Delete(ctx, c.path(), AnyVersion)
	if err == nil || errors.Is(err, ErrNoNode) {
		return nil
	}
	c.retire()
	return fmt.Errorf("resign %s: %w", c.path(), err)
}

// retire removes the candidate's node in a goroutine that ends once no node
// of this candidate is left or the Conn is closed.
func (c *Candidate) retire() {
	c.retireOnce.Do(func() {
		go func() {
			var b backoff
			for {
				err := removeToken(c.conn, c.dir, c.token)
				if err == nil || errors.Is(err, ErrClosed) {
					return
				}
				b.wait(context.Background())
			}
		}()
	})
}

func removeToken(conn Conn, dir, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names, err := conn.Children(ctx, dir)
	if errors.Is(err, ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, name := range names {
		if !strings.HasPrefix(name, token+"-") {
			continue
		}
		if err := conn.Delete(ctx, JoinPath(dir, name), AnyVersion); err != nil && !errors.Is(err, ErrNoNode) {
			return err
		}
	}
	return nil
}

// Candidates lists the election in dir in line order: the first is the
// leader. A missing directory is an empty election.
func Candidates(ctx context.Context, conn Conn, dir string) ([]CandidateInfo, error) {
	names, err := conn.Children(ctx, dir)
	if errors.Is(err, ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("candidates in %s: %w", dir, err)
	}
	var out []CandidateInfo
	for _, name := range inLine(names) {
		data, _, err := conn.Get(ctx, JoinPath(dir, name))
		if errors.Is(err, ErrNoNode) {
			continue // left while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("candidates in %s: %w", dir, err)
		}
		out = append(out, CandidateInfo{Name: name, Data: data})
	}
	return out, nil
}

// inLine returns the candidate names among names sorted by sequence number;
// other names are not candidates and are dropped.
func inLine(names []string) []string {
	line := slices.DeleteFunc(slices.Clone(names), func(n string) bool {
		_, ok := sequence(n)
		return !ok
	})
	slices.SortFunc(line, func(a, b string) int {
		sa, _ := sequence(a)
		sb, _ := sequence(b)
		return int(sa - sb)
	})
	return line
}

// sequence parses the "-%010d" suffix a sequential create appends.
func sequence(name string) (int64, bool) {
	const digits = 10
	if len(name) < digits+1 || name[len(name)-digits-1] != '-' {
		return 0, false
	}
	n, err := strconv.ParseInt(name[len(name)-digits:], 10, 64)
	return n, err == nil && n >= 0
}

func newToken() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random candidate token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// backoff waits 50 ms, then twice as long each time, at most 2 s.
type backoff struct{ next time.Duration }

// wait sleeps the next interval; false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	d := max(b.next, 50*time.Millisecond)
	b.next = min(2*d, 2*time.Second)
	return clock.Sleep(ctx, d) == nil
}

func (b *backoff) reset() { b.next = 0 }
