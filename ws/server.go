package ws

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wire"
)

// ServerConfig configures a Server. Zero values mean the defaults.
type ServerConfig struct {
	// Viewer serves the browser viewer at GET / (without id) and /static/.
	// Default: none (404).
	Viewer http.Handler
	// Metrics serves GET /metrics. Default: none (404).
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
	// Logger receives request-level logs. Default: discard.
	Logger *slog.Logger
	// HubMetrics are the collectors the handlers update; use the hub's.
	HubMetrics *Metrics
}

func (c *ServerConfig) setDefaults(h *Hub) {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 64 << 10
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HubMetrics == nil {
		c.HubMetrics = h.metrics
	}
	if c.Ready == nil {
		c.Ready = h.store.Ping
	}
}

// Server is the HTTP and WebSocket front of a Hub: an http.Handler that
// opens no listener. It is safe for concurrent use. Because
// http.Server.Shutdown neither closes nor waits for upgraded connections,
// call Server.Shutdown too: it stops the hub and waits for every WebSocket.
type Server struct {
	hub *Hub
	cfg ServerConfig
	mux *http.ServeMux
	log *slog.Logger
	m   *Metrics

	wg sync.WaitGroup // WebSocket handlers

	mu       sync.Mutex
	conns    map[*websocket.Conn]context.CancelFunc // guarded by mu
	shutdown bool                                   // guarded by mu
}

// NewServer returns a Server for hub.
func NewServer(hub *Hub, cfg ServerConfig) *Server {
	cfg.setDefaults(hub)
	s := &Server{hub: hub, cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger, m: cfg.HubMetrics,
		conns: make(map[*websocket.Conn]context.CancelFunc)}
	s.route("/{$}", map[string]http.HandlerFunc{"GET": s.handleRoot, "POST": s.handleReferenceCreate})
	s.route("/static/", map[string]http.HandlerFunc{"GET": s.handleViewer})
	s.route("/channels", map[string]http.HandlerFunc{"GET": s.handleList, "POST": s.handleCreate})
	s.route("/channels/{id}", map[string]http.HandlerFunc{"GET": s.handleInfo})
	s.route("/channels/{id}/messages", map[string]http.HandlerFunc{"GET": s.handleHistory, "POST": s.handleAppend})
	s.route("/channels/{id}/close", map[string]http.HandlerFunc{"POST": s.handleClose})
	s.route("/ws", map[string]http.HandlerFunc{"GET": s.handleWS})
	s.route("/metrics", map[string]http.HandlerFunc{"GET": s.handleMetrics})
	s.route("/healthz", map[string]http.HandlerFunc{"GET": s.handleHealth})
	s.route("/readyz", map[string]http.HandlerFunc{"GET": s.handleReady})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s", r.URL.Path))
	})
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
	allow := strings.Join(sortedStrings(allowed), ", ")
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
		h(w, r)
	})
}

func sortedStrings(a []string) []string {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
	return a
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Shutdown stops the hub (flushing every channel to the store), closes every
// WebSocket with 1001 (going away) and waits for their handlers, or until
// ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
	err := s.hub.Stop(ctx)
	s.mu.Lock()
	for _, cancel := range s.conns {
		cancel()
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

// ---- errors

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

// statusOf maps a hub error to an HTTP status and a message for people.
func statusOf(err error, id string) (int, string) {
	var fe *FromError
	var be *BadRequestError
	var se *StoreError
	var re *ResetError
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, fmt.Sprintf("channel %q not found", id)
	case errors.Is(err, ErrExists):
		return http.StatusConflict, fmt.Sprintf("channel %q already exists", id)
	case errors.Is(err, ErrChannelClosed):
		return http.StatusConflict, fmt.Sprintf("channel %q is closed", id)
	case errors.Is(err, ErrOverloaded), errors.Is(err, ErrShuttingDown):
		return http.StatusServiceUnavailable, err.Error()
	case errors.As(err, &fe), errors.As(err, &be):
		return http.StatusBadRequest, err.Error()
	case errors.As(err, &re):
		return http.StatusConflict, err.Error()
	case errors.As(err, &se):
		return http.StatusServiceUnavailable, "storage is unavailable, retry later"
	}
	return http.StatusInternalServerError, "internal error"
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error, id string) {
	status, msg := statusOf(err, id)
	if status >= 500 && !errors.Is(err, ErrShuttingDown) && !errors.Is(err, ErrOverloaded) {
		s.log.Error("request failed", slog.String("path", r.URL.Path), slog.String("channel", id), slog.Any("err", err))
	}
	writeError(w, status, msg)
}

// ---- validation

// ValidID reports whether id is a valid channel id: 1–128 bytes of
// [A-Za-z0-9._:-].
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func idError(id string) string {
	if len(id) > 128 {
		return fmt.Sprintf("channel id is %d bytes long; at most 128 are allowed", len(id))
	}
	if id == "" {
		return "channel id is missing"
	}
	return fmt.Sprintf("channel id %q has characters outside [A-Za-z0-9._:-]", id)
}

// newID makes a random channel id.
func newID() string { return strings.ToLower(rand.Text()) }

func parseGenerator(freqStr, maxStr string) (*persist.Generator, error) {
	g := &persist.Generator{Freq: 20, Max: 50}
	if freqStr != "" {
		f, err := strconv.ParseFloat(freqStr, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < MinFreq || f > MaxFreq {
			return nil, &BadRequestError{Msg: fmt.Sprintf("freq %q must be a number of lines per second in [%v, %d]", freqStr, MinFreq, MaxFreq)}
		}
		g.Freq = f
	}
	if maxStr != "" {
		n, err := strconv.ParseInt(maxStr, 10, 64)
		if err != nil || n < 1 || n > MaxLines {
			return nil, &BadRequestError{Msg: fmt.Sprintf("max %q must be an integer in [1, %d]", maxStr, MaxLines)}
		}
		g.Max = n
	}
	return g, nil
}

func validGenerator(g *persist.Generator) error {
	if math.IsNaN(g.Freq) || math.IsInf(g.Freq, 0) || g.Freq < MinFreq || g.Freq > MaxFreq {
		return &BadRequestError{Msg: fmt.Sprintf("generator.freq %v must be in [%v, %d]", g.Freq, MinFreq, MaxFreq)}
	}
	if g.Max < 1 || g.Max > MaxLines {
		return &BadRequestError{Msg: fmt.Sprintf("generator.max %d must be in [1, %d]", g.Max, MaxLines)}
	}
	return nil
}

// parseFrom parses a from parameter: the last seq the client already has.
func parseFrom(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, &BadRequestError{Msg: fmt.Sprintf("from %q must be a non-negative integer (the last seq you already have)", v)}
	}
	return n, nil
}

// parseLimit parses a page size: 1–1000, default 100.
func parseLimit(v string) (int, error) {
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, &BadRequestError{Msg: fmt.Sprintf("limit %q must be an integer in [1, 1000]", v)}
	}
	return n, nil
}

// ---- channels API

type createRequest struct {
	ID        string            `json:"id"`
	Generator *generatorRequest `json:"generator"`
}

// generatorRequest is the generator of a create request.
type generatorRequest struct {
	Freq float64 `json:"freq"`
	Max  int64   `json:"max"`
	// StartWhenSubscribers delays the first line until that many
	// subscribers are registered.
	StartWhenSubscribers int `json:"start_when_subscribers"`
}

// maxStartWhen bounds start_when_subscribers.
const maxStartWhen = 1_000_000

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4096))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "request body is larger than 4096 bytes")
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("malformed JSON body: %v", err))
			return
		}
		if dec.More() {
			writeError(w, http.StatusBadRequest, "malformed JSON body: more than one value")
			return
		}
	}
	if req.ID == "" {
		req.ID = newID()
	} else if !ValidID(req.ID) {
		writeError(w, http.StatusBadRequest, idError(req.ID))
		return
	}
	var gen *persist.Generator
	startWhen := 0
	if g := req.Generator; g != nil {
		gen = &persist.Generator{Freq: g.Freq, Max: g.Max}
		if err := validGenerator(gen); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if g.StartWhenSubscribers < 0 || g.StartWhenSubscribers > maxStartWhen {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("generator.start_when_subscribers %d must be in [0, %d]", g.StartWhenSubscribers, maxStartWhen))
			return
		}
		startWhen = g.StartWhenSubscribers
	}
	info, err := s.hub.Create(r.Context(), req.ID, gen, startWhen)
	if err != nil {
		s.fail(w, r, err, req.ID)
		return
	}
	w.Header().Set("Location", "/channels/"+info.ID)
	writeJSON(w, http.StatusCreated, info)
}

type listResponse struct {
	Channels []ChannelInfo `json:"channels"`
	Next     string        `json:"next"`
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	after := q.Get("after")
	list, err := s.hub.List(r.Context(), after, limit)
	if err != nil {
		s.fail(w, r, err, "")
		return
	}
	resp := listResponse{Channels: list}
	if len(list) == limit {
		resp.Next = list[len(list)-1].ID
	}
	writeJSON(w, http.StatusOK, resp)
}

// pathID returns the {id} path value, or writes a 400 and returns false.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !ValidID(id) {
		writeError(w, http.StatusBadRequest, idError(id))
		return "", false
	}
	return id, true
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	info, err := s.hub.Info(r.Context(), id)
	if err != nil {
		s.fail(w, r, err, id)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

type seqResponse struct {
	Seq int64 `json:"seq"`
}

// readMessage reads a message body, enforcing the size bound and UTF-8.
func (s *Server) readMessage(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxMessageBytes)))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("message is larger than the limit of %d bytes", s.cfg.MaxMessageBytes))
		return nil, false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading the message: %v", err))
		return nil, false
	}
	if !utf8.Valid(data) {
		writeError(w, http.StatusBadRequest, "message is not valid UTF-8 text")
		return nil, false
	}
	return data, true
}

func (s *Server) handleAppend(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	wait := false
	switch v := r.URL.Query().Get("wait"); v {
	case "":
	case "persisted":
		wait = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("wait=%q: the only value is wait=persisted", v))
		return
	}
	data, ok := s.readMessage(w, r)
	if !ok {
		return
	}
	seq, err := s.hub.Append(r.Context(), id, data, wait)
	if err != nil {
		if seq == 0 && errors.Is(err, ErrShuttingDown) && wait {
			// Appended, but not confirmed durable before shutdown.
			writeError(w, http.StatusServiceUnavailable, "server is shutting down; the message may not be persisted")
			return
		}
		s.fail(w, r, err, id)
		return
	}
	writeJSON(w, http.StatusOK, seqResponse{Seq: seq})
}

type closeResponse struct {
	LastSeq int64 `json:"last_seq"`
}

func (s *Server) handleClose(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	last, err := s.hub.Close(r.Context(), id)
	if err != nil {
		s.fail(w, r, err, id)
		return
	}
	writeJSON(w, http.StatusOK, closeResponse{LastSeq: last})
}

type historyMessage struct {
	Seq  int64  `json:"seq"`
	Time int64  `json:"time"`
	Data string `json:"data"`
}

type historyResponse struct {
	Messages []historyMessage `json:"messages"`
	Next     int64            `json:"next"`
}

func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	from, err := parseFrom(q.Get("from"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	msgs, err := s.hub.History(r.Context(), id, from, limit)
	if err != nil {
		s.fail(w, r, err, id)
		return
	}
	resp := historyResponse{Messages: make([]historyMessage, len(msgs)), Next: from}
	for i, m := range msgs {
		resp.Messages[i] = historyMessage{Seq: m.Seq, Time: m.Time, Data: string(m.Data)}
		resp.Next = m.Seq
	}
	writeJSON(w, http.StatusOK, resp)
}

// ---- health, metrics, viewer

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
	if err := s.cfg.Ready(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("not ready: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Metrics == nil {
		writeError(w, http.StatusNotFound, "metrics are not enabled")
		return
	}
	s.cfg.Metrics.ServeHTTP(w, r)
}

func (s *Server) handleViewer(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Viewer == nil {
		writeError(w, http.StatusNotFound, "the viewer is not enabled; GET /?id=ID streams a channel")
		return
	}
	s.cfg.Viewer.ServeHTTP(w, r)
}

// handleRoot is the reference API's GET /?id=ID, or the viewer without id.
func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	if !r.URL.Query().Has("id") {
		s.handleViewer(w, r)
		return
	}
	id := r.URL.Query().Get("id")
	if !ValidID(id) {
		writeError(w, http.StatusBadRequest, idError(id))
		return
	}
	s.streamText(w, r, id)
}

// handleReferenceCreate is the reference API's POST /?freq=F&max=N: the body
// is the channel id (empty: one is made); a generator starts and the
// response streams the content.
func (s *Server) handleReferenceCreate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	gen, err := parseGenerator(q.Get("freq"), q.Get("max"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1024))
	if err != nil {
		writeError(w, http.StatusBadRequest, "the body must be a channel id of at most 128 bytes")
		return
	}
	id := strings.TrimSpace(string(body))
	if id == "" {
		id = newID()
	} else if !ValidID(id) {
		writeError(w, http.StatusBadRequest, idError(id))
		return
	}
	if _, err := s.hub.Create(r.Context(), id, gen, 0); err != nil {
		s.fail(w, r, err, id)
		return
	}
	w.Header().Set("Channel-Id", id)
	s.streamText(w, r, id)
}

// textSink streams raw message data as a chunked text/plain response.
type textSink struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	m       *Metrics
}

func (t *textSink) hello(helloInfo) error {
	t.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	t.w.Header().Set("X-Content-Type-Options", "nosniff")
	t.w.Header().Set("Cache-Control", "no-store")
	t.w.WriteHeader(http.StatusOK)
	return t.rc.Flush()
}

func (t *textSink) messages(msgs []*wire.Message, live bool) error {
	_ = t.rc.SetWriteDeadline(time.Now().Add(t.timeout))
	for _, m := range msgs {
		if _, err := t.w.Write(m.Data); err != nil {
			return err
		}
	}
	observeDelivery(t.m, msgs, live)
	return t.rc.Flush()
}

func (t *textSink) live(int64) error { return nil }
func (t *textSink) end(int64) error  { return nil }

func observeDelivery(m *Metrics, msgs []*wire.Message, live bool) {
	m.delivered.Add(float64(len(msgs)))
	if live {
		now := time.Now().UnixMicro()
		for _, msg := range msgs {
			m.latency.Observe(float64(now-msg.Time) / 1e6)
		}
	}
}

// streamText streams channel id from the beginning as text/plain until the
// channel ends.
func (s *Server) streamText(w http.ResponseWriter, r *http.Request, id string) {
	t := &textSink{w: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout, m: s.m}
	started := false
	sink := &helloTracker{sink: t, started: &started}
	err := s.hub.stream(r.Context(), id, 0, "", sink)
	if err == nil {
		return
	}
	if !started {
		s.fail(w, r, err, id)
		return
	}
	if !isClientGone(err) && !errors.Is(err, ErrShuttingDown) {
		s.log.Warn("text stream failed", slog.String("channel", id), slog.Any("err", err))
	}
	// The response is cut short: abort it so the client sees an error
	// rather than a complete-looking stream.
	panic(http.ErrAbortHandler)
}

// helloTracker records whether the sink's hello (the response header) was
// sent.
type helloTracker struct {
	sink
	started *bool
}

func (h *helloTracker) hello(i helloInfo) error {
	*h.started = true
	return h.sink.hello(i)
}
