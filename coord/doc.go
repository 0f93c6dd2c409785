// Package coord is how ThunderYurts keeps its cluster state in a coordination
// service (ZooKeeper in production). It has two layers, shaped like vitess
// go/vt/topo:
//
//   - A small generic connection, Conn: get, create, compare-and-set update and
//     delete of nodes with an opaque Version, ephemeral nodes that live with the
//     connection's session, and watches that return the current value plus a
//     channel of later ones. coord/zkcoord implements it on ZooKeeper,
//     coord/memcoord in memory with fault injection, and coord/coordtest is the
//     conformance suite both pass. Leader election (Campaign), self-healing
//     ephemeral registrations (KeepEphemeral) and read–change–CAS–retry updates
//     (UpdateJSON) are written once on top of Conn.
//   - The domain, Cluster: the cluster's metadata, slot table (with the slot
//     migrations in flight), groups, registered nodes, coordinator election,
//     rebalance plan and migration history under /thunderyurts/<cluster>,
//     each record JSON so operators can read it with any ZooKeeper tool.
//     Every znode path is built in paths.go. PlanMoves, the rebalance
//     planner, is a pure function of the slot table and the groups.
//
// A coordinator creates the cluster and assigns slots:
//
//	conn, err := zkcoord.Dial(ctx, "127.0.0.1:2181", zkcoord.Options{})
//	if err != nil {
//		return err
//	}
//	defer conn.Close()
//	cl := coord.NewCluster(conn, "default")
//	if _, err := cl.CreateIfMissing(ctx, coord.ClusterMeta{Slots: 1024, ReplicationFactor: 2}); err != nil {
//		return err
//	}
//	_, err = cl.UpdateSlotTable(ctx, func(t *coord.SlotTable) error {
//		copy(t.Owners, coord.SpreadEvenly(len(t.Owners), []string{"g1", "g2"}))
//		return nil
//	})
//
// and routes keys with SlotOf and Cluster.Routes. A leader acts only while the
// context returned by Candidate.WaitForLeadership lives: it is cancelled the
// moment the session is in doubt, so a deposed leader never overlaps its
// successor.
package coord
