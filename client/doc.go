// Package client is the Go client of ThunderYurts. Applications import it to
// get, put, delete and scan keys; `thunderctl get/put/del/scan/bench` use it
// too.
//
// A Client reads the routes (the versioned slot table and each group's
// primary) once, caches them, and sends every request straight to the primary
// that owns the key's slot. Concurrent requests bound for one node travel
// together in batches over a few long-lived streams, so many requests share
// each round trip. On a "moved" answer, a node that is no longer primary, or
// a broken connection, the client refreshes the routes and retries until the
// operation's deadline (Options.Timeout when the context has none;
// DefaultTimeout, 10 s, outlasts a failover with the default ZooKeeper
// session timeout).
//
// A keepalive finds nodes that stop answering without closing their
// connections (a stopped process, a partition): a connection that hears
// nothing for a second is pinged and closed if the ping gets no reply within
// another second. A request that times out, or a late ping, makes its
// connection suspect; while one is, the client re-reads the routes every
// 100 ms and moves the requests waiting on a node that is no longer primary
// to the new one.
//
// Dial connects through ZooKeeper, and Close releases everything it opened:
//
//	c, err := client.Dial(ctx, "zk1:2181,zk2:2181,zk3:2181", "default", client.Options{})
//	if err != nil { ... }
//	defer c.Close()
//	err = c.Put(ctx, []byte("user:1"), []byte("ada"))
//	v, err := c.Get(ctx, []byte("user:1"))
//	if errors.Is(err, client.ErrNotFound) { ... }
//
// Every failure to reach the cluster in time, whichever part failed
// (ZooKeeper, the coordinators, a group without a primary, a node), matches
// ErrUnavailable. The client logs nothing unless Options.Logger is set; in
// particular the ZooKeeper session's events never reach the application's
// default logger. New takes a route source of the caller's instead of
// ZooKeeper, such as CoordinatorRoutes. The calls only operators' tools make
// to one data node (status, handover, dump) are in wire/nodeclient.
//
// Every Put and Delete carries a tag, the client's random id and the
// write's number in that client, and every retry of it the same tag: a
// primary whose log already holds the write (written by it or by the
// primary it took over from) answers with that entry's outcome instead of
// writing it again, so a write takes effect at most once even when its
// attempts straddle a failover and another client's write
// (docs/replication.md, "Idempotent writes"). A Put or Delete that fails
// with a timeout or a lost connection may still have been applied, once.
//
// On a cluster that runs mutual TLS (docs/security.md), Options.TLS carries
// the application's credentials, usually a "client" certificate:
//
//	certs, err := tlsauth.Load(tlsauth.Files{Cert: "app.pem", Key: "app-key.pem", CA: "ca.pem"})
//	c, err := client.Dial(ctx, zkServers, "default", client.Options{TLS: certs.ClientConfig()})
//
// wire/nodeclient.Nodes makes the calls admin tools address to one node
// (status, handover, dump) with the same credentials.
package client
