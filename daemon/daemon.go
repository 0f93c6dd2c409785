package daemon

// Daemon is the lifecycle every long-running ThunderYurts process shares,
// so callers (the CLI, the in-process test cluster) run any of them the
// same way.
type Daemon interface {
	// Done is closed when the daemon has stopped, on its own or by Close.
	Done() <-chan struct{}
	// Err says why the daemon stopped on its own; nil while it runs and
	// after a Close that it did not need.
	Err() error
	// Close stops the daemon and waits for it; it is idempotent and returns
	// the same error each time.
	Close() error
}
