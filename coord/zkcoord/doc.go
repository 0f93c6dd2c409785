// Package zkcoord is the ZooKeeper implementation of coord.Conn, and the only
// package that imports the ZooKeeper client (github.com/go-zookeeper/zk).
// It converts ZooKeeper's errors into coord's sentinels in one place
// (errors.go), makes every call return when its context ends, supports a
// chroot in the connect string ("host:port,host:port/chroot"), and declares
// the session in doubt (SessionDone) the moment the client loses its
// connection, long before the server expires the session: a leader stops
// acting before anyone can replace it.
//
//	conn, err := zkcoord.Dial(ctx, "127.0.0.1:2181", zkcoord.Options{SessionTimeout: 5 * time.Second})
//	if err != nil {
//		return err // errors.Is(err, coord.ErrUnavailable) when no server answered
//	}
//	defer conn.Close()
//
// With Options.Auth the Conn presents digest credentials before any other
// request, on every connection and every new session, and creates every
// node with the ACL of Options.ACL (that identity alone, or with read for
// everyone); ACL and ApplyACL (coord.ACLConn) show and migrate the ACLs of
// existing nodes. A refusal by an ACL matches coord.ErrNoAuth.
//
// For tests of failure handling, a Conn can be cut off from ZooKeeper
// (SetUnavailable) and have its session expired on the server
// (ExpireSession).
package zkcoord
