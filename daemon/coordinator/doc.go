// Package coordinator is the control-plane daemon (`thunderctl serve
// coord`). It keeps nothing of its own: every coordinator serves the routing
// service from ZooKeeper, and the one elected leader (the lowest ephemeral
// sequential znode under coordinators/) also acts on the cluster: it creates
// the cluster on first start, admits registered data nodes into their groups,
// picks a primary for a group that has none, spreads the slots evenly
// over the groups once the first data nodes have registered, and carries
// out rebalance plans by moving slot migrations on from the primaries'
// reports (migrate.go, docs/migration.md).
//
// A leader whose ZooKeeper session ends or is in doubt stops acting at once
// (its leadership context is cancelled) and campaigns again; every change it
// makes is a compare-and-set, so a deposed leader's late write fails.
package coordinator
