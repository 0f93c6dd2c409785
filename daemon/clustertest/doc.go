// Package clustertest runs a ThunderYurts cluster inside one test process,
// for control-plane tests that take seconds: coordinators and data nodes
// (real datastore stores in t.TempDir(), dRPC on loopback ports) over one
// in-memory coordination service (coord/memcoord), each member with a
// session of its own, so any one of them can lose it.
//
// Faults, by member name:
//
//   - ExpireSession: the service expires the member's session (its
//     registration or election znode goes; it gets a new session).
//   - Disconnect / Reconnect: the member loses its connection to the
//     service; its session stays alive until ExpireSession.
//   - Kill: the member stops abruptly — a data node closes without handing
//     over its role and keeps its directory — and its session ends.
//   - Restart: a killed or stopped member starts again (same directory and
//     address for a data node) with a new session.
//   - Partition / Heal: dRPC between two members is lost (connections
//     hang, as in a real partition; healing resets them). Every member reads
//     every data node's address through its own session, and the cluster
//     rewrites it there to a loopback proxy for that pair of members, so a
//     partition cuts exactly that pair: follower to primary, coordinator
//     probe to node, client to node.
//
// Client returns a client.Client that is a member too (named "client").
package clustertest
