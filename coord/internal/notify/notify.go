package notify

import "sync"

// Latest puts v into ch, replacing a value the receiver has not taken yet.
// ch must have a buffer of exactly one and the caller must be its only sender;
// then Latest never blocks, so a slow receiver cannot stall whoever produces
// the events, and the receiver always sees the newest value.
func Latest[T any](ch chan T, v T) {
	select {
	case ch <- v:
		return
	default:
	}
	select {
	case <-ch:
	default:
	}
	ch <- v
}

// Session tracks the done channel of a connection's current session. The zero
// value is not usable; call NewSession.
type Session struct {
	mu     sync.Mutex
	done   chan struct{}
	ended  bool // done is closed and not yet replaced
	closed bool // the connection is closed: no next session
}

// NewSession returns a tracker whose first session is live.
func NewSession() *Session {
	return &Session{done: make(chan struct{})}
}

// Done returns the channel of the current session. Once that session has
// ended, the next call returns the channel of the session to come, so a
// caller that sees its channel closed asks again after reconnecting. After
// Close it returns a closed channel.
func (s *Session) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renew()
	return s.done
}

// Up records that a session is established. A channel already handed out
// for "the next session" stays valid and now belongs to this one.
func (s *Session) Up() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renew()
}

// Down closes the current session's channel: the session ended or is in
// doubt. It reports whether the channel was open.
func (s *Session) Down() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down()
}

// Close ends the current session for good; every later Done returns a closed
// channel.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.down()
}

func (s *Session) renew() {
	if s.ended && !s.closed {
		s.done = make(chan struct{})
		s.ended = false
	}
}

func (s *Session) down() bool {
	if s.ended {
		return false
	}
	close(s.done)
	s.ended = true
	return true
}
