package ops

import (
	"context"
	"time"

	"github.com/thunderyurts/thunderyurts/coord"
)

// WatchSession registers the ZooKeeper session series of conn
// (thunder_zookeeper_session_up, thunder_zookeeper_disconnects_total) and
// returns the loop that counts the session's ends; the daemon runs it until
// ctx ends.
func (r *Registry) WatchSession(conn coord.Conn) (run func(ctx context.Context)) {
	r.Gauge("thunder_zookeeper_session_up", "1 while the ZooKeeper session is confirmed alive within its timeout.", func() float64 {
		l := conn.Lease()
		if l.Session != 0 && time.Since(l.Sent) < l.Timeout {
			return 1
		}
		return 0
	})
	disconnects := r.Counter("thunder_zookeeper_disconnects_total",
		"Times the ZooKeeper session ended or fell in doubt (disconnected or expired); the client reconnects after each.")
	return func(ctx context.Context) {
		var last <-chan struct{}
		for {
			done := conn.SessionDone()
			if done == last {
				return // the connection is closed: there is no next session
			}
			last = done
			select {
			case <-ctx.Done():
				return
			case <-done:
				if ctx.Err() == nil {
					disconnects.Inc()
				}
			}
		}
	}
}
