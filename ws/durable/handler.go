package durable

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// HandlerConfig configures a Handler. Zero values mean the defaults.
type HandlerConfig struct {
	// Backend stores the streams. Required.
	Backend Backend
	// Prefix is the URL path the stream names follow. Default "/v1/stream/".
	Prefix string
	// LongPollTimeout is how long a long-poll read waits for data before it
	// answers 204. Default 20s.
	LongPollTimeout time.Duration
	// SSELifetime is how long an SSE response lasts before the server ends
	// it (the client reconnects from its last offset). Default 60s.
	SSELifetime time.Duration
	// MaxAppendBytes bounds a PUT or POST body; a JSON body may be three
	// times as large, since a client's batch of MaxAppendBytes of values
	// carries a comma per value (and may pass the size by its last one).
	// The number of messages of a JSON body is not bounded apart: the
	// backend counts them at their memory cost. Default 1 MiB.
	MaxAppendBytes int
	// BodyTimeout bounds the time a PUT or POST body takes to arrive; past
	// it the answer is 408 and the connection is closed. Default 30s.
	BodyTimeout time.Duration
	// MaxReadBytes bounds the data of one long-poll response or SSE data
	// event (one message larger than this is still sent whole). Default
	// 1 MiB.
	MaxReadBytes int
	// MaxCatchupBytes bounds the data of one catch-up response, which
	// otherwise holds everything up to the tail as of the request (one
	// message larger than this is still sent whole); past it the response
	// ends without Stream-Up-To-Date and the client reads on from its
	// Stream-Next-Offset. Default 64 MiB.
	MaxCatchupBytes int64
	// Logger receives errors the client is not told about. Default: discard.
	Logger *slog.Logger
	// AuthorizeFork, if set, checks that r may read source, the stream a
	// PUT forks from, named exactly as the fork will read it (see
	// SourceName). It answers a refusal itself and returns false; the
	// body is not read then. Nil: every fork is allowed.
	AuthorizeFork func(w http.ResponseWriter, r *http.Request, source string) bool
	// Interrupted, if set, is asked to answer a request whose context
	// ended before its response started. A server that ends requests
	// early through their context (a long-poll when the token that
	// authorised it expires) answers with why, and returns true; it
	// returns false for a context it did not end (the client went away),
	// which is answered as if there were no Interrupted.
	Interrupted func(w http.ResponseWriter, r *http.Request) bool
}

// Handler serves the Durable Streams protocol. It is safe for concurrent
// use; create it with NewHandler.
type Handler struct {
	cfg HandlerConfig
	now func() time.Time
}

// NewHandler returns a Handler for cfg.
func NewHandler(cfg HandlerConfig) *Handler {
	if cfg.Prefix == "" {
		cfg.Prefix = "/v1/stream/"
	}
	if cfg.LongPollTimeout <= 0 {
		cfg.LongPollTimeout = 20 * time.Second
	}
	if cfg.SSELifetime <= 0 {
		cfg.SSELifetime = 60 * time.Second
	}
	if cfg.MaxAppendBytes <= 0 {
		cfg.MaxAppendBytes = 1 << 20
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 30 * time.Second
	}
	if cfg.MaxReadBytes <= 0 {
		cfg.MaxReadBytes = 1 << 20
	}
	if cfg.MaxCatchupBytes <= 0 {
		cfg.MaxCatchupBytes = 64 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, now: time.Now}
}

// exposed lists the response headers a browser script may read.
const exposed = "Stream-Next-Offset, Stream-Up-To-Date, Stream-Cursor, Stream-Closed, Stream-TTL, " +
	"Stream-Expires-At, Stream-SSE-Data-Encoding, Producer-Epoch, Producer-Seq, Producer-Expected-Seq, " +
	"Producer-Received-Seq, ETag, Location, Content-Type"

// setCommon sets the headers of every response.
func setCommon(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cross-Origin-Resource-Policy", "cross-origin")
	hd.Set("Access-Control-Allow-Origin", "*")
	hd.Set("Access-Control-Expose-Headers", exposed)
}

// CheckRequest reports whether r is well-formed: it names a stream, and the
// headers and query its method reads parse. Otherwise it answers as
// ServeHTTP would (404 without a name, 400 with what is wrong) and returns
// false. A server that checks tokens calls it first, so that a malformed
// request learns what is wrong with it whatever its token.
func (h *Handler) CheckRequest(w http.ResponseWriter, r *http.Request) bool {
	setCommon(w)
	name, ok := strings.CutPrefix(r.URL.Path, h.cfg.Prefix)
	if !ok || name == "" {
		httpError(w, http.StatusNotFound, "no stream name: use "+h.cfg.Prefix+"{name}")
		return false
	}
	var err error
	switch r.Method {
	case http.MethodPut:
		if _, err = parseConfig(r); err == nil {
			_, err = parseFork(r.Header, h.cfg.Prefix)
		}
	case http.MethodPost:
		_, err = ParseProducer(r.Header)
	case http.MethodGet:
		_, err = parseReadQuery(r)
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setCommon(w)
	hd := w.Header()
	name, ok := strings.CutPrefix(r.URL.Path, h.cfg.Prefix)
	if !ok || name == "" {
		httpError(w, http.StatusNotFound, "no stream name: use "+h.cfg.Prefix+"{name}")
		return
	}
	switch r.Method {
	case http.MethodOptions:
		hd.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, POST, DELETE, OPTIONS")
		hd.Set("Access-Control-Allow-Headers", "Content-Type, If-None-Match, Stream-TTL, Stream-Expires-At, "+
			"Stream-Seq, Stream-Closed, Producer-Id, Producer-Epoch, Producer-Seq, Authorization")
		hd.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPut:
		h.create(w, r, name)
	case http.MethodPost:
		h.append(w, r, name)
	case http.MethodGet:
		h.read(w, r, name)
	case http.MethodHead:
		h.head(w, r, name)
	case http.MethodDelete:
		h.remove(w, r, name)
	default:
		hd.Set("Allow", "GET, HEAD, PUT, POST, DELETE, OPTIONS")
		httpError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

// httpError answers a JSON error.
func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// fail answers the error a Backend returned, or, if the request's context
// ended, why (see HandlerConfig.Interrupted).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && h.cfg.Interrupted != nil && h.cfg.Interrupted(w, r) {
		return
	}
	var stale *StaleEpochError
	var gap *SeqGapError
	var bad *BadRequestError
	var conflict *ConflictError
	switch {
	case errors.Is(err, ErrNotFound):
		httpError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrConflict), errors.Is(err, ErrStreamSeq), errors.As(err, &conflict):
		httpError(w, http.StatusConflict, err.Error())
	case errors.Is(err, ErrNewEpochSeq), errors.As(err, &bad):
		httpError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrGone), errors.Is(err, ErrDeleted):
		httpError(w, http.StatusGone, err.Error())
	case errors.Is(err, ErrPersistTimeout):
		httpError(w, http.StatusGatewayTimeout, err.Error())
	case errors.Is(err, ErrTooLarge):
		httpError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.As(err, &stale):
		w.Header().Set(hProducerEpoch, strconv.FormatInt(stale.Current, 10))
		httpError(w, http.StatusForbidden, err.Error())
	case errors.As(err, &gap):
		w.Header().Set(hExpectedSeq, strconv.FormatInt(gap.Expected, 10))
		w.Header().Set(hReceivedSeq, strconv.FormatInt(gap.Received, 10))
		httpError(w, http.StatusConflict, err.Error())
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away: nobody to answer.
	default:
		var unavailable interface{ Unavailable() bool }
		if errors.As(err, &unavailable) && unavailable.Unavailable() {
			w.Header().Set("Retry-After", "1")
			httpError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		h.cfg.Logger.Error("durable streams request failed", slog.String("channel", r.URL.Path), slog.Any("err", err))
		httpError(w, http.StatusInternalServerError, "internal error")
	}
}

// ConflictError is a Backend's refusal of a request that conflicts with
// the stream's state in a way the protocol does not name (409).
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

// BadRequestError is a Backend's refusal of a request as malformed, such as
// a stream name it cannot store.
type BadRequestError struct{ Msg string }

func (e *BadRequestError) Error() string { return e.Msg }

// readBody reads a request body of at most MaxAppendBytes (three times
// that if the request's Content-Type is JSON) within BodyTimeout;
// ok=false when it answered an error.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := h.cfg.MaxAppendBytes
	if IsJSON(r.Header.Get("Content-Type")) {
		limit *= 3
	}
	rc := http.NewResponseController(w)
	// An error means the connection cannot take deadlines (a test
	// recorder): the body is then read without one.
	_ = rc.SetReadDeadline(time.Now().Add(h.cfg.BodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			httpError(w, http.StatusRequestEntityTooLarge,
				"the body is larger than "+strconv.Itoa(limit)+" bytes")
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The connection is unusable after a timed-out read: close it.
			w.Header().Set("Connection", "close")
			httpError(w, http.StatusRequestTimeout, "the request body did not arrive within "+h.cfg.BodyTimeout.String())
		default:
			httpError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		}
		return nil, false
	}
	_ = rc.SetReadDeadline(time.Time{})
	return body, true
}

// messages splits a body into the messages of a stream of type ct; ok is
// false when it answered an error.
func (h *Handler) messages(w http.ResponseWriter, ct string, body []byte) ([][]byte, bool) {
	if len(body) == 0 {
		return nil, true
	}
	if IsText(ct) && !utf8.Valid(body) {
		// Text travels as is in SSE events, WebSocket text frames and JSON
		// pages: bytes that are not UTF-8 would corrupt them.
		httpError(w, http.StatusBadRequest, "the body is not valid UTF-8: a "+mediaType(ct)+
			" stream takes UTF-8 text only (use a binary content type, such as application/octet-stream, for bytes)")
		return nil, false
	}
	if !IsJSON(ct) {
		return [][]byte{body}, true
	}
	msgs, err := splitJSON(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return nil, false
	}
	return msgs, true
}

// setInfo sets the headers that describe a stream.
func setInfo(w http.ResponseWriter, info Info) {
	hd := w.Header()
	hd.Set("Content-Type", info.ContentType)
	hd.Set(hNextOffset, info.Tail.String())
	if info.Closed {
		hd.Set(hClosed, "true")
	}
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request, name string) {
	cfg, err := parseConfig(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if cfg.Fork, err = parseFork(r.Header, h.cfg.Prefix); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if cfg.Fork != nil && h.cfg.AuthorizeFork != nil && !h.cfg.AuthorizeFork(w, r, cfg.Fork.From) {
		return
	}
	if cfg.Fork != nil && r.Header.Get("Content-Type") == "" {
		cfg.ContentType = "" // the source's
	}
	closed := strings.EqualFold(r.Header.Get(hClosed), "true")
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	ct := cfg.ContentType
	if ct == "" {
		if info, err := h.cfg.Backend.Stat(r.Context(), cfg.Fork.From); err == nil {
			ct = info.ContentType
		}
	}
	msgs, ok := h.messages(w, ct, body)
	if !ok {
		return
	}
	info, created, err := h.cfg.Backend.Create(r.Context(), name, cfg, msgs, closed)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	setInfo(w, info)
	if !created {
		w.WriteHeader(http.StatusOK)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	w.Header().Set("Location", scheme+"://"+r.Host+r.URL.EscapedPath())
	w.WriteHeader(http.StatusCreated)
}

func (h *Handler) append(w http.ResponseWriter, r *http.Request, name string) {
	closing := strings.EqualFold(r.Header.Get(hClosed), "true")
	producer, err := ParseProducer(r.Header)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	body, ok := h.readBody(w, r)
	if !ok {
		return
	}
	if len(body) == 0 && !closing {
		httpError(w, http.StatusBadRequest, "empty body: an append needs data (or Stream-Closed: true to close)")
		return
	}
	a := Append{Close: closing, StreamSeq: r.Header.Get(hSeq), Producer: producer}
	if len(body) > 0 {
		ct := r.Header.Get("Content-Type")
		if ct == "" || mediaType(ct) == "" {
			httpError(w, http.StatusBadRequest, "Content-Type is required and must match the stream's")
			return
		}
		info, err := h.cfg.Backend.Stat(r.Context(), name)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if !sameType(ct, info.ContentType) {
			httpError(w, http.StatusConflict, "Content-Type "+ct+" does not match the stream's "+info.ContentType)
			return
		}
		if a.Messages, ok = h.messages(w, info.ContentType, body); !ok {
			return
		}
		if len(a.Messages) == 0 {
			httpError(w, http.StatusBadRequest, "empty JSON array: an append needs at least one message")
			return
		}
	}
	res, err := h.cfg.Backend.Append(r.Context(), name, a)
	if errors.Is(err, ErrClosed) {
		w.Header().Set(hClosed, "true")
		w.Header().Set(hNextOffset, res.Info.Tail.String())
		httpError(w, http.StatusConflict, err.Error())
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	hd := w.Header()
	hd.Set(hNextOffset, res.Info.Tail.String())
	if res.Info.Closed {
		hd.Set(hClosed, "true")
	}
	status := http.StatusNoContent
	if producer != nil {
		hd.Set(hProducerEpoch, strconv.FormatInt(producer.Epoch, 10))
		hd.Set(hProducerSeq, strconv.FormatInt(res.ProducerSeq, 10))
		if !res.Duplicate && len(a.Messages) > 0 {
			status = http.StatusOK
		}
	}
	w.WriteHeader(status)
}

func (h *Handler) head(w http.ResponseWriter, r *http.Request, name string) {
	info, err := h.cfg.Backend.Stat(r.Context(), name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	setInfo(w, info)
	if info.TTL > 0 {
		w.Header().Set(hTTL, strconv.FormatInt(info.TTL, 10))
	}
	if !info.ExpiresAt.IsZero() {
		w.Header().Set(hExpiresAt, info.ExpiresAt.Format(time.RFC3339Nano))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) remove(w http.ResponseWriter, r *http.Request, name string) {
	if err := h.cfg.Backend.Delete(r.Context(), name); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
