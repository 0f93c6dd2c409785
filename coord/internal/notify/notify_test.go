package notify

import "testing"

func TestLatest(t *testing.T) {
	ch := make(chan int, 1)
	for i := range 5 {
		Latest(ch, i) // never blocks
	}
	if got := <-ch; got != 4 {
		t.Errorf("got %d, want the latest value 4", got)
	}
	select {
	case v := <-ch:
		t.Errorf("stale value %d left behind", v)
	default:
	}
}

func TestSession(t *testing.T) {
	s := NewSession()
	first := s.Done()
	if s.Done() != first {
		t.Fatal("a live session changed channels")
	}
	if !s.Down() || s.Down() {
		t.Fatal("Down must report true once")
	}
	<-first // closed
	gap := s.Done()
	if gap == first {
		t.Fatal("no new channel after the session ended")
	}
	s.Up()
	if s.Done() != gap {
		t.Fatal("the channel handed out during the gap must belong to the next session")
	}
	s.Down()
	s.Up()
	live := s.Done()
	s.Close()
	<-live
	<-s.Done() // closed for good
	s.Up()
	<-s.Done()
}
