// Package daemon holds the long-running ThunderYurts processes, one
// subpackage each: datanode (`thunderctl serve data`), coordinator
// (`thunderctl serve coord`), devcluster (`thunderctl dev`), and ops, the
// HTTP endpoints every daemon serves (/metrics, /healthz, /readyz).
//
// Every daemon follows one lifecycle: Start(ctx, cfg) returns once its
// listeners are bound, Done() is closed when it stops on its own with Err()
// saying why, and Close() is idempotent and stops it in the order its comment
// gives. Signals are the CLI's business, not the daemon's.
package daemon
