// Package datanode is the data daemon (`thunderctl serve data`): it keeps
// one datastore on disk, registers itself in ZooKeeper as a member of its
// group, follows the slot table and its group's state there, and serves the
// wire Data service.
//
// A request is served only by the primary of the group that owns the key's
// slot in the node's current slot table; otherwise the node answers MOVED
// (naming the owner and the table version) or NOT_PRIMARY, and the client
// refreshes its routes. Writes of every batch that arrives while the previous
// commit runs share one log write and one fdatasync, so an acknowledged write
// is on disk; no goroutine waits per request: each request stream has one
// replier that answers, in one message, every write the high watermark has
// passed.
package datanode
