// Package nodeclient makes the calls to one data node that operators' tools
// and the daemons make, as opposed to the key-value requests of package
// client: a node's status and per-slot counts (admin status, the
// coordinator's failover), a graceful handover of the primary role (admin
// failover) and a consistent dump of slots (backups).
//
// Each call dials the node, makes one request and closes the connection:
// these calls are too rare to keep connections for.
package nodeclient
