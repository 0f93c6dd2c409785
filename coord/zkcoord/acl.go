package zkcoord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/thunderyurts/thunderyurts/coord"
)

// Auth is a ZooKeeper digest identity, "digest:USER:PASSWORD". Its printed
// forms (String, GoString, slog) never show the password.
type Auth struct {
	User, Password string
}

// ParseAuth reads "digest:USER:PASSWORD" (the password may contain colons,
// the user may not). Errors wrap coord.ErrInvalid and never repeat the
// password.
func ParseAuth(s string) (Auth, error) {
	scheme, rest, _ := strings.Cut(s, ":")
	if scheme != "digest" {
		return Auth{}, fmt.Errorf("%w: want digest:USER:PASSWORD (digest is the only scheme)", coord.ErrInvalid)
	}
	user, password, ok := strings.Cut(rest, ":")
	switch {
	case !ok:
		return Auth{}, fmt.Errorf("%w: want digest:USER:PASSWORD", coord.ErrInvalid)
	case user == "":
		return Auth{}, fmt.Errorf("%w: want digest:USER:PASSWORD, the user is missing", coord.ErrInvalid)
	case password == "":
		return Auth{}, fmt.Errorf("%w: want digest:USER:PASSWORD, the password is missing", coord.ErrInvalid)
	case strings.ContainsAny(s, "\n\r"):
		return Auth{}, fmt.Errorf("%w: digest:USER:PASSWORD must be one line", coord.ErrInvalid)
	}
	return Auth{User: user, Password: password}, nil
}

// IsZero reports whether a is no identity at all.
func (a Auth) IsZero() bool { return a == Auth{} }

func (a Auth) String() string {
	if a.IsZero() {
		return "none"
	}
	return "digest:" + a.User + ":<hidden>"
}

// GoString keeps %#v from printing the password.
func (a Auth) GoString() string { return "zkcoord.Auth{" + a.String() + "}" }

// LogValue keeps slog from printing the password.
func (a Auth) LogValue() slog.Value { return slog.StringValue(a.String()) }

// acl is the access list of mode for identity a.
func acl(mode coord.ACLMode, a Auth) ([]zk.ACL, error) {
	if mode == coord.ACLOpen {
		return zk.WorldACL(zk.PermAll), nil
	}
	if a.IsZero() {
		return nil, fmt.Errorf("%w: ACL mode %s needs credentials", coord.ErrInvalid, mode)
	}
	list := zk.DigestACL(zk.PermAll, a.User, a.Password)
	switch mode {
	case coord.ACLCreator:
		return list, nil
	case coord.ACLRead:
		return append(list, zk.WorldACL(zk.PermRead)...), nil
	}
	return nil, fmt.Errorf("%w: unknown ACL mode %s", coord.ErrInvalid, mode)
}

// addAuth presents the credentials to the server for this session. The
// client keeps them and presents them again, before any queued request, on
// every later connection and new session (go-zookeeper resendZkAuth).
func (c *Conn) addAuth(ctx context.Context, a Auth) error {
	for {
		_, err := call(ctx, c, func() (struct{}, error) {
			return struct{}{}, c.zk.AddAuth("digest", []byte(a.User+":"+a.Password))
		})
		if !errors.Is(err, coord.ErrUnavailable) || ctx.Err() != nil {
			return err
		}
		// The connection dropped between the session and the request.
		select {
		case <-ctx.Done():
			return coord.ContextError(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ACL implements coord.ACLConn.
func (c *Conn) ACL(ctx context.Context, path string) ([]coord.ACL, error) {
	full, err := c.full(path)
	if err != nil {
		return nil, fmt.Errorf("get ACL %s: %w", path, err)
	}
	list, err := call(ctx, c, func() ([]zk.ACL, error) {
		list, _, err := c.zk.GetACL(full)
		return list, err
	})
	if err != nil {
		return nil, fmt.Errorf("get ACL %s: %w", path, err)
	}
	out := make([]coord.ACL, len(list))
	for i, a := range list {
		id := a.ID
		if a.Scheme == "digest" {
			id, _, _ = strings.Cut(id, ":") // user:hash; the hash stays here
		}
		out[i] = coord.ACL{Scheme: a.Scheme, ID: id, Perms: perms(a.Perms)}
	}
	return out, nil
}

// perms spells ZooKeeper's permission bits as its own tools do.
func perms(p int32) string {
	var b strings.Builder
	for _, x := range []struct {
		bit  int32
		name byte
	}{{zk.PermCreate, 'c'}, {zk.PermDelete, 'd'}, {zk.PermRead, 'r'}, {zk.PermWrite, 'w'}, {zk.PermAdmin, 'a'}} {
		if p&x.bit != 0 {
			b.WriteByte(x.name)
		}
	}
	return b.String()
}

// ApplyACL implements coord.ACLConn.
func (c *Conn) ApplyACL(ctx context.Context, path string, mode coord.ACLMode, dryRun bool) (bool, error) {
	full, err := c.full(path)
	if err == nil {
		var want []zk.ACL
		if want, err = acl(mode, c.auth); err == nil {
			var changed bool
			if changed, err = c.applyACL(ctx, full, want, dryRun); err == nil {
				return changed, nil
			}
		}
	}
	return false, fmt.Errorf("set ACL %s (%s): %w", path, mode, err)
}

func (c *Conn) applyACL(ctx context.Context, full string, want []zk.ACL, dryRun bool) (bool, error) {
	have, err := call(ctx, c, func() ([]zk.ACL, error) {
		list, _, err := c.zk.GetACL(full)
		return list, err
	})
	if err != nil {
		return false, err
	}
	if sameACL(have, want) {
		return false, nil
	}
	if dryRun {
		return true, nil
	}
	_, err = call(ctx, c, func() (struct{}, error) {
		_, err := c.zk.SetACL(full, want, -1)
		return struct{}{}, err
	})
	return err == nil, err
}

// sameACL compares two lists as sets.
func sameACL(a, b []zk.ACL) bool {
	key := func(l []zk.ACL) []string {
		out := make([]string, len(l))
		for i, x := range l {
			out[i] = fmt.Sprintf("%s:%s:%d", x.Scheme, x.ID, x.Perms)
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}
