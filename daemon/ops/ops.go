// Package ops serves the HTTP endpoints every ThunderYurts daemon exposes
// with --http: /metrics in the Prometheus text format, /healthz (the process
// is alive), /readyz (it can serve its role) and, when enabled, the Go
// profiles under /debug/pprof/. Options.TLS serves them over TLS. It is the
// home of the Prometheus client library (metrics.go); docs/metrics.md lists
// the series.
package ops

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"time"

	"golang.org/x/net/netutil"

	"github.com/thunderyurts/thunderyurts/wire/tlsauth"
)

// httpLimits bound what one HTTP client can hold; docs/operations.md lists
// them.
type httpLimits struct {
	readHeader, read, write, idle time.Duration
	// conns bounds the open connections; further ones wait in the
	// listen backlog until one closes, which the timeouts above ensure.
	conns int
}

var limits = httpLimits{readHeader: 5 * time.Second, read: 10 * time.Second, write: 30 * time.Second, idle: 2 * time.Minute, conns: 256}

const maxHeaderBytes = 64 << 10

// maxProfileSeconds bounds ?seconds= of a CPU profile or trace. pprof
// extends the write deadline by what the client asks; this keeps a client
// from holding a connection open for longer.
const maxProfileSeconds = 300

func capSeconds(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if secs, err := strconv.Atoi(r.FormValue("seconds")); err == nil && secs > maxProfileSeconds {
			http.Error(w, fmt.Sprintf("seconds=%d: at most %d", secs, maxProfileSeconds), http.StatusBadRequest)
			return
		}
		h(w, r)
	}
}

// adminOnly refuses, when tls, a request whose verified certificate does
// not carry the admin role; without TLS it changes nothing.
func adminOnly(tls bool) func(http.HandlerFunc) http.HandlerFunc {
	return func(h http.HandlerFunc) http.HandlerFunc {
		if !tls {
			return h
		}
		return func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 ||
				!slices.Contains(tlsauth.RolesOf(r.TLS.VerifiedChains[0][0]), tlsauth.RoleAdmin) {
				http.Error(w, "profiles need an admin certificate", http.StatusForbidden)
				return
			}
			h(w, r)
		}
	}
}

// Options are what an operator turns on for the endpoints.
type Options struct {
	// Pprof serves the Go profiles under /debug/pprof/ (--enable-pprof).
	Pprof bool
	// TLS, when set, serves HTTPS only (--http-tls); nil: plain HTTP.
	TLS *tls.Config
}

// Server is a running HTTP endpoint.
type Server struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

// Serve binds addr and serves the endpoints until Close. ready returns nil
// when the daemon can serve its role, or why not.
func Serve(addr string, reg *Registry, ready func() error, log *slog.Logger, opts Options) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen %s: %w", addr, err)
	}
	// The limit goes under TLS: the server sees the *tls.Conn, and with it
	// the client's certificate (Request.TLS).
	lis = netutil.LimitListener(lis, limits.conns)
	if opts.TLS != nil {
		lis = tls.NewListener(lis, opts.TLS)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", reg.handler(log))
	// Profiles show the process's memory, keys and values included: they
	// are served only when asked for, on the operator's HTTP address only.
	// Over TLS, only an admin certificate gets them.
	if opts.Pprof {
		admin := adminOnly(opts.TLS != nil)
		mux.HandleFunc("/debug/pprof/", admin(pprof.Index))
		mux.HandleFunc("/debug/pprof/profile", admin(capSeconds(pprof.Profile)))
		mux.HandleFunc("/debug/pprof/trace", admin(capSeconds(pprof.Trace)))
		mux.HandleFunc("/debug/pprof/symbol", admin(pprof.Symbol))
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: limits.readHeader,
		ReadTimeout:       limits.read,
		WriteTimeout:      limits.write,
		IdleTimeout:       limits.idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	s := &Server{srv: srv, addr: lis.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "addr", s.addr, "err", err)
		}
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.addr }

// Close stops the server and waits for it.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
