// Package memcoord is an in-memory coord.Conn for tests, with the faults a
// real coordination service has: a session that expires (its ephemeral nodes
// vanish, its watches and SessionDone fire) and a service that becomes
// unreachable. It passes the same conformance suite (coord/coordtest) as the
// ZooKeeper implementation, so code tested against it behaves the same on
// ZooKeeper.
//
// A Server is the shared tree; each Conn from Connect is one client with its
// own session:
//
//	srv := memcoord.New()
//	leader, standby := srv.Connect(), srv.Connect()
//	cand, _ := coord.Campaign(ctx, leader, "/election", nil)
//	leaderCtx, _ := cand.WaitForLeadership(ctx)
//	leader.ExpireSession() // leaderCtx is cancelled at once
package memcoord
