package zkcoord_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/thunderyurts/thunderyurts/coord"
	"github.com/thunderyurts/thunderyurts/coord/coordtest"
	"github.com/thunderyurts/thunderyurts/coord/zkcoord"
	"github.com/thunderyurts/thunderyurts/coord/zklocal/zktest"
	"github.com/thunderyurts/thunderyurts/internal/poll"
)

const secret = "s3cret:with:colons"

var testAuth = zkcoord.Auth{User: "thunder", Password: secret}

func dialWith(t testing.TB, servers string, opts zkcoord.Options) *zkcoord.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts.SessionTimeout, opts.Logger = sessionTimeout, quiet
	c, err := zkcoord.Dial(ctx, servers, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", servers, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// anonymous is a plain go-zookeeper client without credentials, as an
// attacker on the network would use.
func anonymous(t testing.TB, servers string) *zk.Conn {
	t.Helper()
	zc, events, err := zk.Connect([]string{servers}, sessionTimeout, zk.WithLogInfo(false), zk.WithLogger(discard{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(zc.Close)
	poll.Until(t, 10*time.Second, "anonymous session", func() bool {
		for {
			select {
			case ev := <-events:
				if ev.State == zk.StateHasSession {
					return true
				}
			default:
				return false
			}
		}
	})
	return zc
}

type discard struct{}

func (discard) Printf(string, ...any) {}

// newSecuredCluster creates a cluster through conn, with a registered
// (ephemeral) node and a group, and returns every znode under it.
func newSecuredCluster(t testing.TB, ctx context.Context, conn coord.Conn, name string) []string {
	t.Helper()
	cl := coord.NewCluster(conn, name)
	if _, err := cl.CreateIfMissing(ctx, coord.ClusterMeta{Slots: 8, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	if err := conn.CreateEphemeral(ctx, coord.ClusterPath(name)+"/nodes/n1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Create(ctx, coord.ClusterPath(name)+"/groups/g1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	return walk(t, ctx, conn, coord.ClusterPath(name))
}

func walk(t testing.TB, ctx context.Context, conn coord.Conn, p string) []string {
	t.Helper()
	out := []string{p}
	names, err := conn.Children(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		out = append(out, walk(t, ctx, conn, coord.JoinPath(p, n))...)
	}
	return out
}

// TestConformanceWithAuth: a Conn with credentials creating every node
// with the creator-only ACL passes the whole suite, faults included (the
// credentials survive reconnects and new sessions).
func TestConformanceWithAuth(t *testing.T) {
	srv := zktest.Start(t)
	coordtest.Run(t, func(t *testing.T) coord.Conn {
		return dialWith(t, srv.Addr(), zkcoord.Options{Auth: testAuth, ACL: coord.ACLCreator})
	}, faults{})
}

// TestACLKeepsAnonymousOut: with credentials, every znode of the cluster
// (parents made on the way included) carries the ACL; a client without them
// can change none and, in creator mode, read none; in read mode it can read.
func TestACLKeepsAnonymousOut(t *testing.T) {
	srv := zktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	anon := anonymous(t, srv.Addr())
	for _, mode := range []coord.ACLMode{coord.ACLCreator, coord.ACLRead} {
		t.Run(mode.String(), func(t *testing.T) {
			conn := dialWith(t, srv.Addr()+"/chroot-"+mode.String(), zkcoord.Options{Auth: testAuth, ACL: mode})
			paths := newSecuredCluster(t, ctx, conn, "c")
			if len(paths) < 6 {
				t.Fatalf("only %d znodes: %v", len(paths), paths)
			}
			want := "digest:thunder:cdrwa"
			if mode == coord.ACLRead {
				want += ",world:anyone:r"
			}
			// The chroot and /thunderyurts, made as parents, count too.
			all := append([]string{"/", coord.Root}, paths...)
			for _, p := range all {
				list, err := conn.ACL(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, a := range list {
					got = append(got, a.String())
				}
				if strings.Join(got, ",") != want {
					t.Errorf("ACL of %s = %v, want %s", p, got, want)
				}
				full := "/chroot-" + mode.String() + strings.TrimSuffix(p, "/")
				if _, err := anon.Set(full, []byte("x"), -1); !errors.Is(err, zk.ErrNoAuth) {
					t.Errorf("anonymous set %s: %v, want ErrNoAuth", full, err)
				}
				if _, err := anon.Create(full+"/intruder", nil, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
					t.Errorf("anonymous create under %s: %v, want ErrNoAuth", full, err)
				}
				if _, err := anon.SetACL(full, zk.WorldACL(zk.PermAll), -1); !errors.Is(err, zk.ErrNoAuth) {
					t.Errorf("anonymous set ACL %s: %v, want ErrNoAuth", full, err)
				}
				// Not even the password's digest: ZooKeeper 3.8 shows an
				// ACL only to those who may read or administer the node.
				_, _, err = anon.GetACL(full)
				if mode == coord.ACLCreator && !errors.Is(err, zk.ErrNoAuth) {
					t.Errorf("anonymous get ACL %s: %v, want ErrNoAuth", full, err)
				}
				_, _, err = anon.Get(full)
				if mode == coord.ACLCreator && !errors.Is(err, zk.ErrNoAuth) {
					t.Errorf("anonymous get %s: %v, want ErrNoAuth", full, err)
				}
				if mode == coord.ACLRead && err != nil {
					t.Errorf("anonymous get %s in read mode: %v", full, err)
				}
			}
			for _, p := range paths[1:] {
				full := "/chroot-" + mode.String() + p
				if err := anon.Delete(full, -1); !errors.Is(err, zk.ErrNoAuth) && !errors.Is(err, zk.ErrNotEmpty) {
					t.Errorf("anonymous delete %s: %v, want ErrNoAuth", full, err)
				}
			}
			if left := walk(t, ctx, conn, coord.ClusterPath("c")); len(left) != len(paths) {
				t.Errorf("znodes after the attempts: %v, want %v", left, paths)
			}
		})
	}
}

// TestNoAuthError: a Conn without the credentials gets coord.ErrNoAuth in
// words an operator understands, and Dial refuses an ACL without them.
func TestNoAuthError(t *testing.T) {
	srv := zktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	owner := dialWith(t, srv.Addr(), zkcoord.Options{Auth: testAuth, ACL: coord.ACLCreator})
	newSecuredCluster(t, ctx, owner, "c")
	plain := dial(t, srv.Addr())
	_, _, err := plain.Get(ctx, coord.ClusterPath("c")+"/slots")
	if !errors.Is(err, coord.ErrNoAuth) || err.Error() != "get /thunderyurts/c/slots: ZooKeeper refused: not authorised" {
		t.Errorf("anonymous get: %v, want ErrNoAuth", err)
	}
	if _, err := plain.Update(ctx, coord.ClusterPath("c")+"/slots", nil, coord.AnyVersion); !errors.Is(err, coord.ErrNoAuth) {
		t.Errorf("anonymous update: %v, want ErrNoAuth", err)
	}
	other := dialWith(t, srv.Addr(), zkcoord.Options{Auth: zkcoord.Auth{User: "thunder", Password: "wrong"}})
	if _, _, err := other.Get(ctx, coord.ClusterPath("c")+"/meta"); !errors.Is(err, coord.ErrNoAuth) {
		t.Errorf("get with a wrong password: %v, want ErrNoAuth", err)
	}
	if _, err := zkcoord.Dial(ctx, srv.Addr(), zkcoord.Options{ACL: coord.ACLRead, Logger: quiet}); !errors.Is(err, coord.ErrInvalid) {
		t.Errorf("dial with an ACL and no credentials: %v, want ErrInvalid", err)
	}
}

// TestAuthSurvivesReconnectAndExpiry: the credentials are presented again
// on a new connection and on a new session, before any request.
func TestAuthSurvivesReconnectAndExpiry(t *testing.T) {
	srv := zktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := dialWith(t, srv.Addr(), zkcoord.Options{Auth: testAuth, ACL: coord.ACLCreator})
	if _, err := conn.Create(ctx, "/locked", []byte("0")); err != nil {
		t.Fatal(err)
	}
	works := func(step string) {
		t.Helper()
		poll.UntilNil(t, 20*time.Second, func() error {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if _, err := conn.Update(cctx, "/locked", []byte(step), coord.AnyVersion); err != nil {
				return err
			}
			err := conn.CreateEphemeral(cctx, "/locked/"+step, nil)
			if errors.Is(err, coord.ErrNoAuth) {
				t.Fatalf("%s: %v", step, err)
			}
			return err
		})
	}
	works("first")
	conn.SetUnavailable(true)
	conn.SetUnavailable(false)
	works("reconnected")
	old := conn.Lease().Session
	ctxE, cancelE := context.WithTimeout(ctx, 20*time.Second)
	defer cancelE()
	if err := conn.ExpireSession(ctxE); err != nil {
		t.Fatal(err)
	}
	works("expired")
	if now := conn.Lease().Session; now == old && old != 0 {
		t.Errorf("session %x did not change", now)
	}
	if data, _, err := conn.Get(ctx, "/locked"); err != nil || string(data) != "expired" {
		t.Errorf("get after the new session: %q, %v", data, err)
	}
}

// TestApplyACL: an open tree is locked down node by node, idempotently, a
// dry run changes nothing, and ACLOpen opens it again.
func TestApplyACL(t *testing.T) {
	srv := zktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	paths := newSecuredCluster(t, ctx, dial(t, srv.Addr()), "c")
	conn := dialWith(t, srv.Addr(), zkcoord.Options{Auth: testAuth})
	anon := anonymous(t, srv.Addr())
	apply := func(mode coord.ACLMode, dryRun bool) int {
		t.Helper()
		n := 0
		for _, p := range paths {
			changed, err := conn.ApplyACL(ctx, p, mode, dryRun)
			if err != nil {
				t.Fatal(err)
			}
			if changed {
				n++
			}
		}
		return n
	}
	if n := apply(coord.ACLCreator, true); n != len(paths) {
		t.Errorf("dry run: %d changes, want %d", n, len(paths))
	}
	if _, err := anon.Set(paths[0], nil, -1); err != nil {
		t.Errorf("the dry run changed an ACL: %v", err)
	}
	if n := apply(coord.ACLCreator, false); n != len(paths) {
		t.Errorf("secure: %d changes, want %d", n, len(paths))
	}
	if n := apply(coord.ACLCreator, false); n != 0 {
		t.Errorf("secure again: %d changes, want 0", n)
	}
	for _, p := range paths {
		if _, err := anon.Set(p, nil, -1); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("anonymous set %s after securing: %v", p, err)
		}
	}
	if n := apply(coord.ACLOpen, false); n != len(paths) {
		t.Errorf("open: %d changes, want %d", n, len(paths))
	}
	if _, _, err := anon.Get(paths[0]); err != nil {
		t.Errorf("anonymous get after opening: %v", err)
	}
	if _, err := dial(t, srv.Addr()).ApplyACL(ctx, paths[0], coord.ACLCreator, false); !errors.Is(err, coord.ErrInvalid) {
		t.Errorf("apply creator ACL without credentials: %v, want ErrInvalid", err)
	}
}

func TestParseAuth(t *testing.T) {
	a, err := zkcoord.ParseAuth("digest:thunder:" + secret)
	if err != nil || a != testAuth {
		t.Fatalf("parse: %+v, %v", a, err)
	}
	for _, bad := range []string{"", "digest", "digest:", "digest::pw", "digest:u", "digest:u:", "sasl:u:pw", "digest:u:p\nw"} {
		_, err := zkcoord.ParseAuth(bad)
		if !errors.Is(err, coord.ErrInvalid) {
			t.Errorf("parse %q: %v, want ErrInvalid", bad, err)
		}
		if strings.Contains(fmt.Sprint(err), "pw") {
			t.Errorf("parse %q: error %q repeats the password", bad, err)
		}
	}
	var buf strings.Builder
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "auth", a, "opts", zkcoord.Options{Auth: a})
	for _, s := range []string{a.String(), fmt.Sprintf("%v %+v %#v %s", a, a, a, a), buf.String(),
		fmt.Sprintf("%v %+v", zkcoord.Options{Auth: a}, zkcoord.Options{Auth: a})} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("printed form shows the password: %s", s)
		}
	}
}
