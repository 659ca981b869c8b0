// Package ws is the HTTP and WebSocket front of messages over the hub
// (package ws/hub): the Server and its routes, the channels API, the
// reference API, the WebSocket transport, token checks, per-client quotas,
// body limits, request validation and the HTTP metrics. The wire format is
// package ws/wire, the Go client package ws/client, and Durable Streams
// over the hub package ws/streams, which this package mounts.
//
// One file per concern:
//
//   - server.go: the Server, its routes, shutdown, health and readiness
//   - channels.go: the /channels API
//   - reference.go: the reference API (GET and POST /)
//   - websocket.go: the WebSocket transport (GET /ws)
//   - lightconn.go: what an idle WebSocket costs: small buffers, and a
//     reader that lets go of the library between frames
//   - corkconn.go: the connection under each WebSocket, which writes a
//     frame's header and payload at once
//   - durable_http.go: mounting ws/durable at /v1/stream/ with token rights
//   - authz.go: the token checks of every endpoint
//   - validate.go: request parameters
//   - body.go: reading request bodies within the body timeout
//   - quota.go: the per-client quotas (connections, creations)
//   - errors.go: the hub's errors as HTTP statuses
//   - metrics.go: the front's Prometheus collectors
//   - httpmetrics.go: requests counted by route pattern, method and status
//   - stats.go: GET /stats, the compact JSON the viewer's server panel plots
package ws

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/internal/defaults"
	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/ratelog"
	"github.com/messages-server/messages/ws/streams"
)

// ServerConfig configures a Server. Zero values mean the defaults.
type ServerConfig struct {
	// Viewer serves the browser viewer at GET / (without id) and /static/.
	// Default: none (404).
	Viewer http.Handler
	// Metrics serves GET /metrics, to admin tokens only when Auth requires
	// tokens. Default: none (404).
	Metrics http.Handler
	// Ready reports readiness for GET /readyz (database reachable,
	// migrations done). Default: the hub's store Ping.
	Ready func(ctx context.Context) error
	// AllowedOrigins lists the host patterns (path.Match syntax) of other
	// origins allowed to open WebSockets; the server's own host is always
	// allowed. "*" allows every origin.
	AllowedOrigins []string
	// Compression enables permessage-deflate on WebSockets. Default off.
	Compression bool
	// MaxMessageBytes bounds a message's size. Default 64 KiB.
	MaxMessageBytes int
	// WriteTimeout bounds each write to a subscriber. Default 10s.
	WriteTimeout time.Duration
	// PingInterval is how often idle WebSockets are pinged. Default 30s.
	PingInterval time.Duration
	// BodyTimeout bounds the time a request body takes to arrive, from the
	// moment its handler starts; past it the answer is 408. Default 30s.
	BodyTimeout time.Duration
	// MaxConnsPerIP bounds the WebSockets and streaming responses (GET
	// and POST /, Durable Streams long-poll and SSE reads) open at once per
	// client IP, and the requests whose body is still to be read; past it
	// 429. Default 10,000.
	MaxConnsPerIP int
	// CreateRate bounds channel creations (Durable Streams PUTs included,
	// except those that find their stream as they ask) per client IP per
	// second, with bursts of CreateBurst; past it 429. Defaults 1000 and
	// 2000.
	CreateRate  float64
	CreateBurst int
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// (for the per-IP quotas). Default none: the peer is the client.
	TrustedProxies []netip.Prefix
	// Logger receives request-level logs. Default: discard.
	Logger *slog.Logger
	// HTTPMetrics are the collectors the handlers update (see NewMetrics).
	// Default: not exported.
	HTTPMetrics *Metrics
	// Guard, if set, checks every request's Host and origin before any
	// route (421, 403). It runs inside the server's bound on unread
	// bodies, so that its refusals do not hold their connections either.
	Guard *auth.Guard
	// Auth checks the token of every request that reads or writes a
	// channel (see docs/SECURITY.md for the right each endpoint needs).
	// Nil: open mode, every request is allowed.
	Auth *auth.Authorizer
	// Streams, if set, serves the Durable Streams protocol at /v1/stream/
	// and idempotent producers on the channels API. Default: neither.
	Streams *streams.Backend
	// LongPollTimeout is how long a Durable Streams long-poll read waits.
	// Default 20s.
	LongPollTimeout time.Duration
	// MaxCatchupBytes bounds the data of one Durable Streams catch-up
	// response, which otherwise holds everything up to the tail as of the
	// request. Default 64 MiB.
	MaxCatchupBytes int64
}

func (c *ServerConfig) setDefaults(h *hub.Hub) {
	defaults.Positive(&c.MaxMessageBytes, 64<<10)
	defaults.Positive(&c.WriteTimeout, 10*time.Second)
	defaults.Positive(&c.PingInterval, 30*time.Second)
	defaults.Positive(&c.MaxConnsPerIP, 10_000)
	defaults.Positive(&c.CreateRate, 1000)
	defaults.Positive(&c.CreateBurst, 2000)
	defaults.Positive(&c.BodyTimeout, 30*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPMetrics == nil {
		c.HTTPMetrics = NewMetrics(nil)
	}
	if c.Ready == nil {
		c.Ready = h.Store().Ping
	}
}

// Server is the HTTP and WebSocket front of a Hub: an http.Handler that
// opens no listener. It is safe for concurrent use. Because
// http.Server.Shutdown neither closes nor waits for upgraded connections,
// call Server.Shutdown too: it stops the hub and waits for every WebSocket.
type Server struct {
	hub *hub.Hub
	cfg ServerConfig
	mux *http.ServeMux
	// edge serves every request: the Guard and the mux within the bound
	// on unread bodies.
	edge http.Handler
	log  *slog.Logger
	m    *Metrics
	q    *quotas
	// Warnings that a flood of clients repeats, at most a line or two
	// per interval each (see ratelog).
	storeWarn, writeWarn, textWarn *ratelog.Logger

	wg sync.WaitGroup // WebSocket handlers and text streams

	mu       sync.Mutex
	conns    map[*websocket.Conn]context.CancelFunc // guarded by mu
	texts    map[*http.Request]context.CancelFunc   // guarded by mu: text streams
	shutdown bool                                   // guarded by mu
}

// NewServer returns a Server for hub.
func NewServer(hub *hub.Hub, cfg ServerConfig) *Server {
	cfg.setDefaults(hub)
	s := &Server{hub: hub, cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger, m: cfg.HTTPMetrics, q: newQuotas(&cfg),
		conns: make(map[*websocket.Conn]context.CancelFunc), texts: make(map[*http.Request]context.CancelFunc),
		storeWarn: ratelog.New(cfg.Logger, slog.LevelWarn, "websocket: store unavailable", 0),
		writeWarn: ratelog.New(cfg.Logger, slog.LevelWarn, "websocket write failed", 0),
		textWarn:  ratelog.New(cfg.Logger, slog.LevelWarn, "text stream failed", 0)}
	s.route("/{$}", map[string]http.HandlerFunc{"GET": s.handleRoot, "POST": s.handleReferenceCreate})
	s.route("/static/", map[string]http.HandlerFunc{"GET": s.handleViewer})
	s.route("/channels", map[string]http.HandlerFunc{"GET": s.handleList, "POST": s.handleCreate})
	s.route("/channels/{id}", map[string]http.HandlerFunc{"GET": s.handleInfo, "DELETE": s.handleDelete})
	s.route("/channels/{id}/messages", map[string]http.HandlerFunc{"GET": s.handleHistory, "POST": s.handleAppend})
	s.route("/channels/{id}/close", map[string]http.HandlerFunc{"POST": s.handleClose})
	s.route("/ws", map[string]http.HandlerFunc{"GET": s.handleWS})
	s.route("/metrics", map[string]http.HandlerFunc{"GET": s.handleMetrics})
	s.route("/stats", map[string]http.HandlerFunc{"GET": s.handleStats})
	s.route("/healthz", map[string]http.HandlerFunc{"GET": s.handleHealth})
	s.route("/readyz", map[string]http.HandlerFunc{"GET": s.handleReady})
	if cfg.Streams != nil {
		s.mux.Handle(durablePrefix, s.durableHandler())
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s", r.URL.Path))
	})
	var h http.Handler = routed(s.mux)
	if cfg.Guard != nil {
		h = cfg.Guard.Handler(h)
	}
	s.edge = s.boundBodies(h)
	return s
}

// route registers handlers by method; other methods get a JSON 405.
func (s *Server) route(pattern string, byMethod map[string]http.HandlerFunc) {
	allowed := make([]string, 0, len(byMethod))
	for m := range byMethod {
		allowed = append(allowed, m)
	}
	if _, ok := byMethod["GET"]; ok {
		allowed = append(allowed, "HEAD")
	}
	slices.Sort(allowed)
	allow := strings.Join(allowed, ", ")
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if method == "HEAD" {
			method = "GET"
		}
		h, ok := byMethod[method]
		if !ok {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow))
			return
		}
		// r.URL.Query() drops what does not parse: GET /?id=%zz would
		// be the viewer rather than a bad channel id.
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("malformed query string: %v", err))
			return
		}
		h(w, r)
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.m.http.instrument(s.edge, w, r) }

// Shutdown stops the hub (flushing every channel to the store), closes every
// WebSocket with 1001 (going away), ends every text stream (GET /?id= and
// POST /) with a clean end of the response, and waits for their handlers,
// or until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
	err := s.hub.Stop(ctx)
	s.mu.Lock()
	for _, cancel := range s.conns {
		cancel()
	}
	for _, cancel := range s.texts {
		cancel() // streams still catching up; the others were ended by Stop
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.CloseNow()
		}
		s.mu.Unlock()
		<-done
		if err == nil {
			err = fmt.Errorf("ws: shutdown: %w", ctx.Err())
		}
	}
	return err
}

// DropConnections aborts every WebSocket without a close handshake, as a
// network failure would. Clients are expected to resume. It is meant for
// tests and fault drills.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.CloseNow()
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	s.mu.Lock()
	down := s.shutdown
	s.mu.Unlock()
	if down {
		writeError(w, http.StatusServiceUnavailable, "shutting down")
		return
	}
	if !s.hub.TakenOver() {
		writeError(w, http.StatusServiceUnavailable, "taking over the channels of the previous process; requests are served meanwhile")
		return
	}
	if err := s.cfg.Ready(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("not ready: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) handleViewer(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Viewer == nil {
		writeError(w, http.StatusNotFound, "the viewer is not enabled; GET /?id=ID streams a channel")
		return
	}
	s.cfg.Viewer.ServeHTTP(w, r)
}
