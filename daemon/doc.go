// Package daemon holds the long-running ThunderYurts processes, one
// subpackage each: datanode (`thunderctl serve data`), coordinator
// (`thunderctl serve coord`), devcluster (`thunderctl dev`) with procs, the child-process supervisor it
// shares with the end-to-end tests, clustertest, and ops, the
// HTTP endpoints every daemon serves (/metrics, /healthz, /readyz).
//
// Every daemon follows one lifecycle, the Daemon interface: Start(ctx, cfg)
// returns once its listeners are bound, Done() is closed when it stops with
// Err() saying why it stopped on its own, and Close() is idempotent and stops
// it in the order its comment gives. The start context bounds the start
// alone; a daemon runs until Close or until it fails. Signals are the CLI's
// business, not the daemon's. clustertest runs coordinators and data nodes in
// one test process, each with a session of its own, for fast tests of the
// control plane.
package daemon
