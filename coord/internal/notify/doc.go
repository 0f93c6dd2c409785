// Package notify holds the two channel patterns every coord.Conn
// implementation shares: a latest-value channel that never blocks its sender
// (watch events coalesce, the receiver always finds the newest value) and a
// per-session "done" channel that closes when a session ends or is in doubt
// and is replaced by a fresh one for the next session.
//
//	ch := make(chan coord.WatchData, 1)
//	notify.Latest(ch, coord.WatchData{Data: data}) // replaces an unread value
package notify
