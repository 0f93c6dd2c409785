// Package admin builds and renders what `thunderctl admin` shows: the cluster
// status, the raw znodes, the slot table with its migrations, and rebalance
// plans and their progress (docs/migration.md). Pure functions turn coord state
// (and, for status, what each data node reports about itself) into plain row
// structs; printers render those as tables for people or as indented JSON
// for scripts, so both outputs always carry the same data. This is the only
// package that imports tablewriter.
//
// Example:
//
//	st, err := admin.CollectStatus(ctx, cluster, probe) // probe calls Node.Status on addr
//	if err != nil {
//		return err
//	}
//	return admin.PrintStatus(os.Stdout, st, admin.FormatTable)
package admin
