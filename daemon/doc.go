// Package daemon holds the long-running ThunderYurts processes, one
// subpackage each: datanode (`thunderctl serve data`), coordinator
// (`thunderctl serve coord`) and devcluster (`thunderctl dev`); beside them
// ops, the HTTP endpoints every daemon serves (/metrics, /healthz,
// /readyz), procs, the child-process supervisor devcluster shares with the
// end-to-end tests, and clustertest, which runs coordinators and data nodes
// in one test process for fast tests of the control plane.
//
// Every daemon follows one lifecycle, the Daemon interface: Start(ctx, cfg)
// returns once its listeners are bound (ctx bounds the start alone), Done()
// is closed when it stops, Err() says why it stopped on its own, and Close()
// is idempotent and stops it in the order its comment gives. A daemon runs
// until Close or until it fails. Signals are the CLI's business, not the
// daemon's.
package daemon
