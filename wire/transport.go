package wire

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"net"
	"time"

	"storj.io/drpc"
	"storj.io/drpc/drpcconn"
	"storj.io/drpc/drpcmanager"
	"storj.io/drpc/drpcserver"
	"storj.io/drpc/drpcstream"
	"storj.io/drpc/drpcwire"

	"github.com/thunderyurts/thunderyurts/wire/tlsauth"
)

// MaxBatchBytes is where a sender stops adding requests to a Batch: the
// keys and values already in it reach this many bytes. The request that
// crosses it still goes, so a Batch carries at most MaxBatchBytes plus one
// value plus the framing of MaxBatchRequests requests.
const MaxBatchBytes = 16 << 20

// MaxBatchRequests bounds the requests in one Batch.
const MaxBatchRequests = 1024

// MaxMessageBytes is the default bound on one message a server accepts. It
// holds every Batch when values are at most 4 MiB; DataMessageBytes raises it
// for larger values.
const MaxMessageBytes = 64 << 20

// batchOverhead bounds what a Batch adds to its keys and values: per request
// its id, op and flags, and the tags and lengths of its fields.
const batchOverhead = MaxBatchRequests * 64

// DataMessageBytes is the message bound a data node with the given largest
// value sets on its listener: never below MaxMessageBytes, and always large
// enough for a full Batch whose last value is as large as allowed.
func DataMessageBytes(maxValueSize int) int {
	return max(MaxMessageBytes, MaxBatchBytes+maxValueSize+maxKeyBytes+batchOverhead)
}

// maxKeyBytes is the largest key the cluster accepts (client.MaxKeySize).
const maxKeyBytes = 4096

// frameSplit is the frame size both ends cut messages into (dRPC's own
// default, set here so maxFrameBytes below stays true).
const frameSplit = 64 << 10

// maxFrameBytes bounds the data of one frame a server accepts: a peer
// claiming a larger frame is cut off before anything is buffered.
const maxFrameBytes = 4 * frameSplit

// maxReplyBytes bounds one message a dialer accepts from a server. Servers
// are trusted; this only stops a broken one from growing the buffer without
// end.
const maxReplyBytes = math.MaxInt32

// DefaultDialTimeout bounds connection set-up when the caller gives none.
const DefaultDialTimeout = 2 * time.Second

// DialOptions configure Dial.
type DialOptions struct {
	// Timeout bounds connection set-up, TLS handshake included; 0:
	// DefaultDialTimeout.
	Timeout time.Duration
	// TLS, when set, makes the connection mutual TLS
	// (tlsauth.Certs.ClientConfig); nil dials plain TCP.
	TLS *tls.Config
}

// Dial opens a dRPC connection to addr, giving up after opts.Timeout or
// when ctx ends. The caller closes it.
func Dial(ctx context.Context, addr string, opts DialOptions) (*drpcconn.Conn, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultDialTimeout
	}
	var raw net.Conn
	var err error
	if opts.TLS != nil {
		host, _, _ := net.SplitHostPort(addr)
		cfg := tlsauth.ForHost(opts.TLS, host)
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: opts.Timeout}, Config: cfg}
		tctx, cancel := context.WithTimeout(ctx, opts.Timeout)
		raw, err = d.DialContext(tctx, "tcp", addr)
		cancel()
	} else {
		d := net.Dialer{Timeout: opts.Timeout}
		raw, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return drpcconn.NewWithOptions(raw, drpcconn.Options{Manager: managerOptions(maxReplyBytes)}), nil
}

func managerOptions(maxMessage int) drpcmanager.Options {
	return drpcmanager.Options{
		Reader:           drpcwire.ReaderOptions{MaximumBufferSize: maxMessage},
		WriterBufferSize: 64 << 10,
		Stream:           drpcstream.Options{SplitSize: frameSplit},
	}
}

// Server defaults; docs/operations.md lists them.
const (
	DefaultMaxConns         = 1024
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultFrameTimeout     = 10 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultWriteTimeout     = 30 * time.Second
)

// ServerOptions bound what one listener's peers can make the server hold.
// Zero fields take the defaults.
type ServerOptions struct {
	// MaxMessageBytes bounds one message; a peer sending a larger one is
	// disconnected. Default MaxMessageBytes.
	MaxMessageBytes int
	// MaxBufferedBytes bounds the bytes of large messages (past their
	// first MiB) the listener's connections buffer together; a message
	// that finds none free for FrameTimeout closes its connection. Default
	// two messages of MaxMessageBytes.
	MaxBufferedBytes int
	// MaxConns bounds the open connections; further ones are closed as soon
	// as they are accepted. Default DefaultMaxConns.
	MaxConns int
	// HandshakeTimeout is how long a new connection may take to deliver its
	// first complete frame.
	HandshakeTimeout time.Duration
	// FrameTimeout is how long the server waits for the next bytes of a
	// message once begun: it closes slow and half-sent connections.
	FrameTimeout time.Duration
	// IdleTimeout closes a connection that has no call in progress for this
	// long. A call in progress, such as an open stream with no traffic, is
	// never timed out; TCP keep-alive finds its peer gone.
	IdleTimeout time.Duration
	// WriteTimeout closes a connection whose peer does not take what the
	// server writes for this long.
	WriteTimeout time.Duration
	// TLS, when set, serves mutual TLS only (tlsauth.Certs.ServerConfig):
	// a peer without a certificate the CA signed is refused at the
	// handshake, and each call needs the role its RPC requires
	// (authorize). nil serves plain TCP, where every call is allowed.
	TLS *tls.Config
	// Logger receives one line per connection cut off for breaking a limit
	// or failing the TLS handshake.
	Logger *slog.Logger
}

func (o *ServerOptions) setDefaults() {
	orDefault(&o.MaxMessageBytes, MaxMessageBytes)
	orDefault(&o.MaxBufferedBytes, 2*o.MaxMessageBytes)
	// Any one message must be able to get the budget it needs.
	o.MaxBufferedBytes = max(o.MaxBufferedBytes, o.MaxMessageBytes)
	orDefault(&o.MaxConns, DefaultMaxConns)
	orDefault(&o.HandshakeTimeout, DefaultHandshakeTimeout)
	orDefault(&o.FrameTimeout, DefaultFrameTimeout)
	orDefault(&o.IdleTimeout, DefaultIdleTimeout)
	orDefault(&o.WriteTimeout, DefaultWriteTimeout)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func orDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Serve serves handler's dRPC calls on lis within the bounds of opts until
// ctx ends, then closes lis and waits for the connections to close.
func Serve(ctx context.Context, lis net.Listener, handler drpc.Handler, opts ServerOptions) error {
	opts.setDefaults()
	mopts := managerOptions(opts.MaxMessageBytes)
	// dRPC applies this only while a connection waits for its next call.
	mopts.InactivityTimeout = opts.IdleTimeout
	if opts.TLS != nil {
		handler = authorize(handler)
	}
	srv := drpcserver.NewWithOptions(handler, drpcserver.Options{Manager: mopts})
	return srv.Serve(ctx, newGuardedListener(lis, opts))
}
