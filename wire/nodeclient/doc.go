// Package nodeclient makes the calls to one data node that operators' tools
// and the daemons make, as opposed to the key-value requests of package
// client: a node's status and per-slot counts (admin status, the
// coordinator's failover), a graceful handover of the primary role (admin
// failover), a consistent dump of slots (backups) and a restore's batches
// of keys (Load).
//
// Each call dials the node, makes one request and closes the connection:
// these calls are too rare to keep connections for, or, for Load, carry
// enough (about a megabyte) that a dial is small beside them.
package nodeclient
