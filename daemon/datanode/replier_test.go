package datanode

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/thunderyurts/thunderyurts/wire"
)

// stalledStream is a request stream whose client does not read replies
// until released.
type stalledStream struct {
	wire.DRPCData_StreamStream
	release chan struct{}
	sent    chan int
}

func (s *stalledStream) Send(reply *wire.BatchReply) error {
	<-s.release
	s.sent <- len(reply.Responses)
	return nil
}

// A client that stops reading its replies stops being read from once
// maxQueuedReplies wait, and is read from again when it catches up.
func TestReplierBoundsQueuedReplies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rpc := &stalledStream{release: make(chan struct{}), sent: make(chan int, 1<<20)}
	r := &replier{wake: make(chan struct{}, 1), room: make(chan struct{}, 1), stopped: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		defer close(r.stopped)
		done <- r.run(ctx, rpc)
	}()
	batch := make([]*wire.Response, 1024)
	for i := range batch {
		batch[i] = &wire.Response{Id: uint64(i)}
	}
	queued := 0
	for ; queued < 4*maxQueuedReplies; queued += len(batch) {
		short, stop := context.WithTimeout(ctx, 20*time.Millisecond)
		ok := r.waitRoom(short)
		stop()
		if !ok {
			break
		}
		r.ready(batch)
	}
	// What the blocked Send holds plus the queue: at most twice the bound.
	if queued > 2*(maxQueuedReplies+len(batch)) || queued < maxQueuedReplies {
		t.Fatalf("queued %d replies before pushing back, bound %d", queued, maxQueuedReplies)
	}
	close(rpc.release)
	if !r.waitRoom(ctx) {
		t.Fatal("no room after the client read its replies")
	}
	r.close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	total := 0
	for len(rpc.sent) > 0 {
		total += <-rpc.sent
	}
	if total != queued {
		t.Fatalf("sent %d replies, queued %d", total, queued)
	}
}

type recordingStream struct {
	wire.DRPCData_StreamStream
	sizes []int
}

func (s *recordingStream) Send(reply *wire.BatchReply) error {
	s.sizes = append(s.sizes, len(reply.Responses))
	return nil
}

// Replies carrying large values leave in messages of about shipBytes.
func TestSendRepliesBoundsMessages(t *testing.T) {
	value := make([]byte, shipBytes/3+1)
	var responses []*wire.Response
	for range 7 {
		responses = append(responses, &wire.Response{Value: value})
	}
	responses = append(responses, &wire.Response{}, &wire.Response{})
	s := &recordingStream{}
	if err := sendReplies(s, responses); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.sizes, []int{3, 3, 3}) {
		t.Fatalf("messages of %v responses; want [3 3 3]", s.sizes)
	}
}
