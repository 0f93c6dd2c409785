// Package datanode is the data daemon (`thunderctl serve data`): it keeps
// one datastore on disk, registers itself in ZooKeeper as a member of its
// group, watches the slot table and its group's state there, replicates its
// group's log, and serves the wire Data service.
//
// # Serving
//
// A request is served only by the primary of the group that owns the key's
// slot in the node's current slot table; otherwise the node answers MOVED
// (naming the owner and the table version) or NOT_PRIMARY, and the client
// refreshes its routes. Writes of every batch that arrive while the previous
// commit is written share one log write, and an fdatasync makes one or two
// such commits durable; no goroutine waits per
// request: each request stream has one replier that answers, in one
// message, every read at once and every write the high watermark has
// passed. A primary answers only while it holds a lease on its ZooKeeper
// session, checked by the clock on every batch after its reads
// (docs/replication.md, "Fencing"). A tagged write that the node's log
// already holds, or that is on its way there, is answered with that
// entry's outcome instead of being written again (docs/replication.md,
// "Idempotent writes").
//
// # The role machine
//
// One goroutine (manageRole) makes the node act on its group's znode: it
// leads when the znode names it primary, follows the named primary
// otherwise, and acts as nothing while its session is in doubt (until it
// has read the group again) or while its store has failed (until it has
// reopened it). Leading starts a primary for one epoch; a new epoch, a lost
// session, a handover or a failed store ends it.
//
// # The primary: ISR and high watermark
//
// The primary tracks each member's durable position as its replication
// stream acknowledges it. The high watermark is what is durable on the
// primary and on every in-sync replica (the ISR); a write is acknowledged,
// and becomes visible to reads, once the watermark passes it. The primary
// drops a member that lags or disconnects from the ISR, and adds back one
// that caught up, always by a compare-and-set on the group's znode that
// checks its epoch, and a drop is written before any write the member lacks
// is acknowledged.
//
// # Log shipping and following
//
// A secondary follows its primary: it opens a Replicate stream, says where
// its log ends, and the primary answers with a truncation point or a
// snapshot when needed, then ships its log as it is written, with the
// watermark on every message. The secondary's receiver queues each batch
// for its own group commit without waiting and acknowledges what became
// durable. Only members may open the stream, and an acknowledgement of
// more than the stream was sent ends it.
//
// # Repair
//
// A store refused as damaged at start (with Config.Repair), or a node the
// group's record lists for a resync, is rebuilt from the group before the
// node registers: it leaves the ISR by an epoch-bumping compare-and-set
// (never as the only in-sync member; as the named primary it waits for
// the coordinator's failover), then sets its files aside, opens an empty
// store and catches up like a new member (docs/replication.md, "Repairing
// a damaged replica").
//
// # Slot migration
//
// Slots move between groups while they are read and written
// (docs/migration.md); the slot table records each migration's state and
// the node's primary acts on the migrations of its group. The target's
// primary imports the slots: it drops them on a fresh attempt, then opens
// Migrate to the source group's primary, which sends a snapshot of the
// slots and then their log records up to its high watermark; the importer
// writes each batch through its own commit path with a mark recording the
// source position reached, so a new primary of either group resumes from
// the mark. While the table says hold, the source's primary holds (queues)
// requests for the slots, writes a barrier and reports the slots' digests
// there; a hold past a second it releases itself. Requests held are routed
// again when the table changes: to the target after the switch, served
// after a release. Cleanup drops the source's copy, an abort the target's.
//
// # Files
//
//	node.go       Config, Start/Close, registration, watching the cluster (watchCluster), node state
//	role.go       the role machine: lead, follow or nothing
//	primary.go    the primary of one epoch: members, ISR upkeep, watermark, lease, handover
//	replicate.go  the primary's side of Replicate: whom it trusts, shipping log and snapshots
//	follower.go   the secondary's side: followLoop and the receiver that applies a stream
//	service.go    the Data service: routing, request batches, scans, status, handover
//	replier.go    one request stream's replies, writes answered as the watermark passes them
//	dedupe.go     the table of tagged writes in the log, so a retried write is written once
//	tagtable.go   the table's storage: a ring of tags and an open-addressing index
//	storefail.go  a failed store: stepping down, reopening with backoff
//	repair.go     a damaged store: leaving the ISR, setting files aside, rebuilding from the group
//	migrate.go    slot migrations: the tasks of each migration, drops, marks, reports
//	migrate_source.go  the source's Migrate stream: snapshot, log records, positions, throttle
//	migrate_target.go  the target's importer: resume from the mark, stream into writes
//	hold.go       the source's hold: queued requests, barrier and digests, the one-second bound
//	metrics.go    the node's Prometheus series
package datanode
