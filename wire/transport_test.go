package wire

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"storj.io/drpc"
	"storj.io/drpc/drpcconn"
	"storj.io/drpc/drpcwire"
)

// rawEncoding sends *[]byte messages as they are.
type rawEncoding struct{}

func (rawEncoding) Marshal(msg drpc.Message) ([]byte, error) { return *msg.(*[]byte), nil }
func (rawEncoding) Unmarshal(buf []byte, msg drpc.Message) error {
	*msg.(*[]byte) = append([]byte(nil), buf...)
	return nil
}

// echo answers every message of a call with the same bytes; on "/slow" it
// takes its time over the first one.
type echo struct{}

func (echo) HandleRPC(stream drpc.Stream, rpc string) error {
	for i := 0; ; i++ {
		if rpc == "/slow" && i == 1 {
			time.Sleep(time.Second)
		}
		var b []byte
		if err := stream.MsgRecv(&b, rawEncoding{}); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := stream.MsgSend(&b, rawEncoding{}); err != nil {
			return err
		}
	}
}

// serve starts Serve of echo on a loopback port until the test ends.
func serve(t *testing.T, opts ServerOptions) string {
	t.Helper()
	return serveHandler(t, echo{}, opts)
}

// serveHandler starts Serve of h on a loopback port until the test ends.
func serveHandler(t *testing.T, h drpc.Handler, opts ServerOptions) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, lis, h, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return lis.Addr().String()
}

func dialTest(t *testing.T, addr string) *drpcconn.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := Dial(ctx, addr, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// openStream starts a call of rpc on a new connection to addr; it ends
// with the test, after at most 10 s.
func openStream(t *testing.T, addr, rpc string) drpc.Stream {
	t.Helper()
	conn := dialTest(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	stream, err := conn.NewStream(ctx, rpc, rawEncoding{})
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// dialRaw opens a plain TCP connection to addr, closed at cleanup.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	return raw
}

func call(ctx context.Context, conn *drpcconn.Conn, msg []byte) ([]byte, error) {
	var out []byte
	err := conn.Invoke(ctx, "/echo", rawEncoding{}, &msg, &out)
	return out, err
}

// waitClosed fails the test unless the server closes raw within patience.
func waitClosed(t *testing.T, raw net.Conn, patience time.Duration) {
	t.Helper()
	_ = raw.SetReadDeadline(time.Now().Add(patience))
	buf := make([]byte, 4096)
	for {
		_, err := raw.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("server kept the connection open for %v", patience)
		}
		if err != nil {
			return
		}
	}
}

// frameHeader is the header of a frame of message (stream, 1) claiming
// length bytes of data.
func frameHeader(stream uint64, kind drpcwire.Kind, length uint64, done bool) []byte {
	control := byte(kind << 1)
	if done {
		control |= 1
	}
	b := []byte{control}
	b = drpcwire.AppendVarint(b, stream)
	b = drpcwire.AppendVarint(b, 1)
	return drpcwire.AppendVarint(b, length)
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestServeCutsClaimsOfHugeFrames(t *testing.T) {
	addr := serve(t, ServerOptions{})
	before := heapAlloc()
	const conns = 16
	const sent = 8 << 20 // what each peer pushes after its claim
	var wg sync.WaitGroup
	raws := make([]net.Conn, conns)
	for i := range raws {
		raw := dialRaw(t, addr)
		raws[i] = raw
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
			claim := frameHeader(1, drpcwire.KindInvoke, 1<<30, true)
			_, _ = raw.Write(append(claim, make([]byte, sent)...))
		}()
	}
	wg.Wait()
	// Peers the server still buffered would hold conns*sent = 128 MiB here.
	if grew := int64(heapAlloc()) - int64(before); grew > 50<<20 {
		t.Errorf("heap grew by %d MiB for %d peers claiming 1 GiB frames", grew>>20, conns)
	}
	for _, raw := range raws {
		waitClosed(t, raw, 5*time.Second)
	}
}

func TestServeCutsOversizedMessages(t *testing.T) {
	addr := serve(t, ServerOptions{MaxMessageBytes: 1 << 20})
	conn := dialTest(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	small := bytes.Repeat([]byte{7}, 900<<10) // many frames, under the bound
	got, err := call(ctx, conn, small)
	if err != nil || !bytes.Equal(got, small) {
		t.Fatalf("message under the bound: %d bytes back, err %v", len(got), err)
	}
	if _, err := call(ctx, conn, make([]byte, 2<<20)); err == nil {
		t.Fatal("message over the bound was served")
	}
	select {
	case <-conn.Closed():
	case <-ctx.Done():
		t.Fatal("connection that sent an oversized message stays open")
	}

	// The same on the raw wire: 64 KiB frames of one message never ending.
	raw := dialRaw(t, addr)
	go func() {
		frame := append(frameHeader(1, drpcwire.KindMessage, 64<<10, false), make([]byte, 64<<10)...)
		_ = raw.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for i := 0; i < 64; i++ { // 4 MiB in all
			if _, err := raw.Write(frame); err != nil {
				return
			}
		}
	}()
	waitClosed(t, raw, 10*time.Second)
}

func TestServeBoundsLargeMessagesTogether(t *testing.T) {
	addr := serve(t, ServerOptions{MaxMessageBytes: 8 << 20, MaxBufferedBytes: 8 << 20, FrameTimeout: 2 * time.Second})
	before := heapAlloc()
	const conns = 16
	frame := append(frameHeader(1, drpcwire.KindMessage, 64<<10, false), make([]byte, 64<<10)...)
	raws := make([]net.Conn, conns)
	sent := make(chan struct{}, conns)
	for i := range raws {
		raw := dialRaw(t, addr)
		raws[i] = raw
		go func() {
			defer func() { sent <- struct{}{} }()
			_ = raw.SetWriteDeadline(time.Now().Add(20 * time.Second))
			for i := 0; i < 127; i++ { // just under 8 MiB, never finished
				if _, err := raw.Write(frame); err != nil {
					return
				}
			}
		}()
	}
	// Without the shared bound every peer's bytes are buffered by now.
	for i, patience := 0, time.After(2*time.Second); i < conns; i++ {
		select {
		case <-sent:
		case <-patience:
			i = conns
		}
	}
	if grew := int64(heapAlloc()) - int64(before); grew > 64<<20 {
		t.Errorf("heap grew by %d MiB for %d peers sending 8 MiB each, 8 MiB shared bound", grew>>20, conns)
	}
	// Small calls need no budget and go through meanwhile.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := call(ctx, dialTest(t, addr), []byte("small")); err != nil {
		t.Fatalf("small call during the flood: %v", err)
	}
	// Peers that wait for budget, and those that stopped half-way, are cut.
	for _, raw := range raws {
		waitClosed(t, raw, 20*time.Second)
	}
}

// Budget taken for a large message comes back when the connection closes
// or, like dRPC's buffer, after a run of small messages.
func TestServeGivesBudgetBack(t *testing.T) {
	addr := serve(t, ServerOptions{MaxMessageBytes: 7 << 19, MaxBufferedBytes: 7 << 19, FrameTimeout: 2 * time.Second}) // room for one 3 MiB message, not two
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	big := make([]byte, 3<<20)
	closed := dialTest(t, addr)
	if _, err := call(ctx, closed, big); err != nil {
		t.Fatal(err)
	}
	_ = closed.Close()
	busy := dialTest(t, addr)
	// The server sees the close asynchronously; allow it a moment.
	for start := time.Now(); ; {
		_, err := call(ctx, busy, big)
		if err == nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("large call after the holder closed: %v", err)
		}
		busy = dialTest(t, addr)
	}
	for i := 0; i < 11; i++ {
		if _, err := call(ctx, busy, []byte("small")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := call(ctx, dialTest(t, addr), big); err != nil {
		t.Fatalf("large call after the holder's run of small ones: %v", err)
	}
}

func TestServeClosesSilentAndHalfSentConnections(t *testing.T) {
	// Short, yet long enough that a loaded machine makes its call before
	// the idle timeout.
	opts := ServerOptions{HandshakeTimeout: time.Second, FrameTimeout: time.Second, IdleTimeout: time.Second}
	addr := serve(t, opts)

	t.Run("silent", func(t *testing.T) {
		raw := dialRaw(t, addr)
		waitClosed(t, raw, 10*time.Second)
	})
	t.Run("half-sent frame", func(t *testing.T) {
		raw := dialRaw(t, addr)
		// A whole first frame, so only the frame timeout can apply.
		first := append(frameHeader(1, drpcwire.KindInvoke, 5, true), "/echo"...)
		if _, err := raw.Write(append(first, append(frameHeader(1, drpcwire.KindMessage, 100, true), "ten bytes."...)...)); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, raw, 10*time.Second)
	})
	t.Run("idle after a call", func(t *testing.T) {
		conn := dialTest(t, addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := call(ctx, conn, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-conn.Closed():
		case <-ctx.Done():
			t.Fatal("connection idle between calls stays open")
		}
	})
}

func TestServeKeepsIdleStreams(t *testing.T) {
	opts := ServerOptions{HandshakeTimeout: 100 * time.Millisecond, FrameTimeout: 100 * time.Millisecond, IdleTimeout: 100 * time.Millisecond}
	stream := openStream(t, serve(t, opts), "/echo")
	// Like client pipes and replication streams, the call starts at once
	// (a first receive flushes the invocation) and then idles.
	for i := 0; i < 3; i++ {
		if i > 0 {
			time.Sleep(500 * time.Millisecond) // well past every timeout
		}
		msg := []byte("still there")
		if err := stream.MsgSend(&msg, rawEncoding{}); err != nil {
			t.Fatalf("send after idling: %v", err)
		}
		var got []byte
		if err := stream.MsgRecv(&got, rawEncoding{}); err != nil || string(got) != "still there" {
			t.Fatalf("answer after idling: %q, %v", got, err)
		}
	}
}

// A server busy with one message stops reading the next, maybe half-way
// through a frame; that wait is not the peer's slowness.
func TestServeFrameTimeoutCountsOnlyThePeer(t *testing.T) {
	stream := openStream(t, serve(t, ServerOptions{FrameTimeout: 200 * time.Millisecond}), "/slow")
	msgs := [][]byte{[]byte("first"), []byte("second"), bytes.Repeat([]byte{1}, 1<<20)}
	for _, msg := range msgs {
		if err := stream.MsgSend(&msg, rawEncoding{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, msg := range msgs {
		var got []byte
		if err := stream.MsgRecv(&got, rawEncoding{}); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes: %d bytes, %v", len(msg), len(got), err)
		}
	}
}

func TestServeLimitsConnections(t *testing.T) {
	addr := serve(t, ServerOptions{MaxConns: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var open []*drpcconn.Conn
	for i := 0; i < 2; i++ {
		conn := dialTest(t, addr)
		if _, err := call(ctx, conn, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		open = append(open, conn)
	}
	third := dialTest(t, addr)
	if _, err := call(ctx, third, []byte("hi")); err == nil {
		t.Fatal("a connection over the limit was served")
	}
	_ = open[0].Close()
	// The server notices the close asynchronously; poll for room.
	for {
		conn, err := Dial(ctx, addr, DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = call(ctx, conn, []byte("hi"))
		_ = conn.Close()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no room after a connection closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestParseFrameHeaderMatchesDRPC(t *testing.T) {
	for _, fr := range []drpcwire.Frame{
		{ID: drpcwire.ID{Stream: 1, Message: 1}, Kind: drpcwire.KindInvoke, Done: true, Data: []byte("/echo")},
		{ID: drpcwire.ID{Stream: 1 << 40, Message: 300}, Kind: drpcwire.KindMessage, Data: make([]byte, 70000)},
		{ID: drpcwire.ID{Stream: 5, Message: 2}, Kind: drpcwire.KindClose, Done: true},
	} {
		b := drpcwire.AppendFrame(nil, fr)
		hdrLen := len(b) - len(fr.Data)
		for n := 0; n < hdrLen; n++ {
			if _, _, ok, err := parseFrameHeader(b[:n]); ok || err != nil {
				t.Fatalf("%v: %d of %d header bytes parsed: ok %v err %v", fr, n, hdrLen, ok, err)
			}
		}
		got, length, ok, err := parseFrameHeader(b[:hdrLen])
		if !ok || err != nil || got.ID != fr.ID || got.Done != fr.Done || length != uint64(len(fr.Data)) {
			t.Fatalf("%v: parsed %v length %d ok %v err %v", fr, got, length, ok, err)
		}
	}
}
