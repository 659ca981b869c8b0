// Package wstest starts complete messages servers for tests: a fresh
// database (PostgreSQL or SQLite), the persist writer, the hub and the HTTP server on a
// loopback port, all stopped when the test ends; and the HTTP helpers the
// tests over them share.
//
// Files: wstest.go (Start and its Options), http.go (requests, and waiting
// for a condition with a deadline).
package wstest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/messages-server/messages/internal/metric/prom"
	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/streams"
)

// The persist types satisfy the seams ws declares.
var (
	_ hub.Store           = (*persist.Store)(nil)
	_ hub.Enqueuer        = (*persist.Writer)(nil)
	_ persist.BatchWriter = (*persist.Store)(nil)
)

// Options configures Start. Zero values mean the server's defaults.
type Options struct {
	// Viewer is served at GET / (without id) and /static/.
	Viewer http.Handler
	// PersistInterval is the hub's flush interval.
	PersistInterval time.Duration
	// QueueLen is each subscriber's live queue length.
	QueueLen int
	// DatabaseURL reuses a database (for restart tests); empty makes a
	// fresh one of Backend.
	DatabaseURL string
	// Backend is the kind of fresh database: "" or "postgres" for a
	// PostgreSQL one, "sqlite" for a SQLite file.
	Backend string
	// MaxMessageBytes bounds message size.
	MaxMessageBytes int
	// PingInterval is how often idle WebSockets are pinged.
	PingInterval time.Duration
	// AllowedOrigins are the other origins allowed to open WebSockets.
	AllowedOrigins []string
	// MaxBufferedPerChannel bounds a channel's unpersisted messages.
	MaxBufferedPerChannel int
	// RetainMessages bounds the persisted messages a channel keeps in
	// memory; small values make catch-ups read the store.
	RetainMessages int
	// Retention configures the deletion of closed channels; the zero
	// value keeps them.
	Retention hub.RetentionConfig
	// Store wraps the store seen by the hub (for fault injection); nil
	// leaves it as is.
	Store func(hub.Store) hub.Store
	// BatchWriter wraps the store seen by the persist writer (for fault
	// injection); nil leaves it as is.
	BatchWriter func(persist.BatchWriter) persist.BatchWriter
	// Auth checks tokens; nil is open mode.
	Auth *auth.Authorizer
	// Guard checks Host and origin in front of the routes, as
	// cmd/messages does, when not nil.
	Guard *auth.Guard
	// Logger receives the logs of the store, the writer, the hub and the
	// server. Default: warnings and errors to stderr.
	Logger *slog.Logger
	// ShutdownTimeout is how long Close gives the server to flush. Close
	// and Crash fail the test if the server has not stopped StopGrace
	// after it. Default 30s.
	ShutdownTimeout time.Duration
	// LongPollTimeout is how long a Durable Streams long-poll waits.
	LongPollTimeout time.Duration
	// MaxCachedStreams bounds the Durable Streams states cached.
	MaxCachedStreams int
	// Hub, if not nil, edits the hub's configuration last (bounds,
	// timeouts, quotas). The store timeout is 30s unless it sets one.
	Hub func(*hub.Config)
	// Server, if not nil, edits the server's configuration last.
	Server func(*ws.ServerConfig)
	// Node, if not empty, opens the store in cluster mode as that node,
	// with leases of Lease (persist.Config.Node and Lease). Nothing renews
	// the leases unless the test does.
	Node  string
	Lease time.Duration
}

// StopGrace is how long past its shutdown timeout a server may take to
// stop before Close or Crash fails the test instead of waiting for it: a
// hub or a writer that does not stop makes the test fail in seconds, not
// hang until the package times out.
const StopGrace = 5 * time.Second

// Server is a running server. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL, http://127.0.0.1:port.
	URL string
	// DatabaseURL is the database the server uses.
	DatabaseURL string
	// Hub is the server's hub.
	Hub *hub.Hub
	// Handler is the server's HTTP handler.
	Handler *ws.Server
	// Registry holds the server's metrics.
	Registry *prometheus.Registry
	// Store is the server's store.
	Store *persist.Store
	// Streams is the server's Durable Streams backend.
	Streams *streams.Backend

	t       testing.TB
	timeout time.Duration // of a graceful shutdown
	http    *httptest.Server
	writer  *persist.Writer
	once    sync.Once
}

// Start starts a server; it is shut down gracefully when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	dbURL := opts.DatabaseURL
	if dbURL == "" {
		switch opts.Backend {
		case "", "postgres":
			dbURL = persisttest.DatabaseURL(t)
		case "sqlite":
			dbURL = persisttest.SQLiteURL(t)
		default:
			t.Fatalf("wstest: unknown backend %q: use postgres or sqlite", opts.Backend)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx := context.Background()
	store, err := persist.Open(ctx, persist.Config{URL: dbURL, Logger: log, Node: opts.Node, Lease: opts.Lease})
	if err != nil {
		t.Fatalf("wstest: open store: %v", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var dst persist.BatchWriter = store
	if opts.BatchWriter != nil {
		dst = opts.BatchWriter(store)
	}
	writer := persist.NewWriter(dst, persist.WriterConfig{Logger: log, Metrics: prom.New(reg), MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	var hubStore hub.Store = store
	if opts.Store != nil {
		hubStore = opts.Store(store)
	}
	m := ws.NewMetrics(reg)
	hubCfg := hub.Config{
		Store: hubStore, Writer: writer, PersistInterval: opts.PersistInterval, QueueLen: opts.QueueLen,
		MaxBufferedPerChannel: opts.MaxBufferedPerChannel, RetainMessages: opts.RetainMessages,
		Retention: opts.Retention, Logger: log, Metrics: hub.NewMetrics(prom.New(reg)),
	}
	// Tests share loaded machines: a store call slower than the
	// production default (5s) is slowness here, not a hung database.
	// Tests of the store timeout set their own.
	hubCfg.StoreTimeout = 30 * time.Second
	if opts.Hub != nil {
		opts.Hub(&hubCfg)
	}
	h := hub.New(hubCfg)
	if err := h.Start(ctx); err != nil {
		t.Fatalf("wstest: start hub: %v", err)
	}
	backend := streams.New(h, store, streams.Config{MaxCached: opts.MaxCachedStreams})
	srvCfg := ws.ServerConfig{
		Viewer: opts.Viewer, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), AllowedOrigins: opts.AllowedOrigins,
		MaxMessageBytes: opts.MaxMessageBytes, PingInterval: opts.PingInterval, Logger: log, HTTPMetrics: m,
		Auth: opts.Auth, Streams: backend, LongPollTimeout: opts.LongPollTimeout,
	}
	if opts.Server != nil {
		opts.Server(&srvCfg)
	}
	srvCfg.Guard = opts.Guard
	srv := ws.NewServer(h, srvCfg)
	hs := httptest.NewServer(srv)
	s := &Server{URL: hs.URL, DatabaseURL: dbURL, Hub: h, Handler: srv, Registry: reg, Store: store,
		Streams: backend, t: t, timeout: opts.ShutdownTimeout, http: hs, writer: writer}
	if s.timeout <= 0 {
		s.timeout = 30 * time.Second
	}
	t.Cleanup(s.Close)
	return s
}

// DropConnections aborts every WebSocket of the server, as a network
// failure would.
func (s *Server) DropConnections() { s.Handler.DropConnections() }

// Crash stops the server about as a crash would: connections are cut
// without a close handshake and shutdown gets no time. The last flush of
// each channel races with the writer giving up, so messages buffered at the
// crash may or may not reach the store: a test may count only on what was
// confirmed durable. Messages delivered but not yet durable may be lost,
// which is what epochs are for.
func (s *Server) Crash() {
	s.once.Do(func() {
		s.bounded("crash", 0, func() {
			expired, cancel := context.WithCancel(context.Background())
			cancel()
			s.http.Listener.Close()
			s.Handler.DropConnections()
			_ = s.Handler.Shutdown(expired)
			s.http.CloseClientConnections()
			s.http.Close()
			_ = s.writer.Close(expired)
			s.Store.Close()
		})
	})
}

// Close shuts the server down gracefully, as SIGTERM does: it stops
// accepting, flushes every channel and closes every connection. It is safe
// to call more than once.
func (s *Server) Close() {
	s.once.Do(func() {
		s.bounded("graceful shutdown", s.timeout, func() {
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			defer cancel()
			s.http.Config.SetKeepAlivesEnabled(false)
			s.http.Listener.Close()
			_ = s.Handler.Shutdown(ctx)
			s.http.CloseClientConnections()
			s.http.Close()
			_ = s.writer.Close(ctx)
			s.Store.Close()
		})
	})
}

// bounded runs stop, which has timeout to do its work, and fails the test
// with the server's goroutines if it has not returned StopGrace later.
// stop then goes on in the background.
func (s *Server) bounded(what string, timeout time.Duration, stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		stop()
	}()
	limit := timeout + StopGrace
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		s.t.Errorf("wstest: %s: the server did not stop within %v: a channel actor or the persist writer "+
			"does not return; its goroutines:\n%s", what, limit, serverGoroutines())
	}
}

// serverGoroutines returns the stacks of the goroutines running code of
// this module.
func serverGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/messages-server/messages/") && !strings.Contains(g, "wstest.serverGoroutines") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
