package ws

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wire"
)

// handleRoot is the reference API's GET /?id=ID, or the viewer without id.
func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("id") {
		s.handleViewer(w, r)
		return
	}
	id := q.Get("id")
	if !hub.ValidID(id) {
		writeError(w, http.StatusBadRequest, hub.IDError(id))
		return
	}
	until, ok := s.authorizeUntil(w, r, auth.Subscribe, id, true)
	if !ok {
		return
	}
	if r.Method == http.MethodHead {
		// The headers a GET would send, without following the stream.
		if _, err := s.hub.Info(r.Context(), id); err != nil {
			s.fail(w, r, err, id)
			return
		}
		setTextHeaders(w)
		w.WriteHeader(http.StatusOK)
		return
	}
	done, ok := s.q.acquireConn(w, r)
	if !ok {
		return
	}
	defer done()
	s.streamText(w, r, id, until)
}

// handleReferenceCreate is the reference API's POST /?freq=F&max=N: the body
// is the channel id (empty: one is made); a generator starts and the
// response streams the content.
func (s *Server) handleReferenceCreate(w http.ResponseWriter, r *http.Request) {
	allowed := s.authorizePublish(w, r)
	if allowed == nil {
		return
	}
	q := r.URL.Query()
	gen, err := parseGenerator(q.Get("freq"), q.Get("max"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	body, ok := s.readBody(w, r, 1024, "request body is larger than 1024 bytes: it must be a channel id of at most 128 bytes")
	if !ok {
		return
	}
	id := strings.TrimSpace(string(body))
	if id != "" && !hub.ValidID(id) {
		writeError(w, http.StatusBadRequest, hub.IDError(id))
		return
	}
	if !allowed(id) {
		return
	}
	if id == "" {
		id = newID()
	}
	done, ok := s.q.acquireConn(w, r)
	if !ok {
		return
	}
	defer done()
	if !s.q.allowCreate(w, r) {
		return
	}
	if _, err := s.hub.Create(r.Context(), id, gen, 0); err != nil {
		s.fail(w, r, err, id)
		return
	}
	w.Header().Set("Channel-Id", id)
	s.streamText(w, r, id, time.Time{})
}

// streamText streams channel id from the beginning as text/plain until the
// channel ends or the server shuts down; both end the response cleanly,
// and its trailer Stream-End tells which.
func (s *Server) streamText(w http.ResponseWriter, r *http.Request, id string, until time.Time) {
	ctx, done, ok := s.trackText(r, until)
	if !ok {
		s.fail(w, r, hub.ErrShuttingDown, id)
		return
	}
	defer done()
	t := &textSink{w: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout, m: s.m}
	started := false
	sink := &helloTracker{Sink: t, started: &started}
	err := s.hub.Stream(ctx, id, 0, "", sink)
	expired := err != nil && tokenExpired(ctx) && r.Context().Err() == nil
	if err != nil && !expired && ctx.Err() != nil && r.Context().Err() == nil {
		err = hub.ErrShuttingDown // cancelled by Shutdown, not by the client
	}
	switch {
	case err == nil:
		w.Header().Set(streamEndTrailer, "closed")
		t.ending()
		return
	case expired && !started:
		auth.WriteError(w, auth.ExpiredError("the token expired before the stream could start"))
		return
	case !started:
		s.fail(w, r, err, id)
		return
	case expired:
		// The content is incomplete; the trailer tells why, and the
		// client reads it again with a fresh token.
		w.Header().Set(streamEndTrailer, "token-expired")
		t.ending()
		return
	case errors.Is(err, hub.ErrShuttingDown):
		// The client cannot resume a text stream: it reads it again
		// later. The trailer tells it the content is incomplete.
		w.Header().Set(streamEndTrailer, "shutdown")
		t.ending()
		return
	case errors.Is(err, hub.ErrChannelDeleted):
		w.Header().Set(streamEndTrailer, "deleted") // there is nothing more to read
		return
	case !isClientGone(err):
		s.textWarn.Log(r.Context(), slog.String("channel", id), slog.Any("err", err))
	}
	// The response is cut short: abort it so the client sees an error
	// rather than a complete-looking stream.
	panic(http.ErrAbortHandler)
}

// streamEndTrailer is the trailer of a text stream: "closed" once the
// channel ended (the content is complete), "shutdown" if the server
// stopped first, "deleted" if the channel was deleted, "token-expired" if
// the token the stream was opened with expired first.
const streamEndTrailer = "Stream-End"

// trackText registers a text stream so that Shutdown ends it and waits for
// it. It returns the stream's context, which also ends at until (when its
// token expires; zero: never), and the function to call when the stream
// is over, or false if the server is shutting down.
func (s *Server) trackText(r *http.Request, until time.Time) (context.Context, func(), bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return nil, nil, false
	}
	ctx, cancel := untilExpiry(r.Context(), until)
	s.texts[r] = cancel
	s.wg.Add(1)
	return ctx, func() {
		s.mu.Lock()
		delete(s.texts, r)
		s.mu.Unlock()
		cancel()
		s.wg.Done()
	}, true
}

// textSink streams raw message data as a chunked text/plain response.
type textSink struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	m       *Metrics
}

// setTextHeaders sets the headers of a text stream.
func setTextHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
}

func (t *textSink) Hello(hub.HelloInfo) error {
	setTextHeaders(t.w)
	t.w.Header().Set("Trailer", streamEndTrailer)
	t.w.WriteHeader(http.StatusOK)
	return t.rc.Flush()
}

func (t *textSink) Messages(msgs []*wire.Message, live bool) error {
	_ = t.rc.SetWriteDeadline(time.Now().Add(t.timeout))
	for _, m := range msgs {
		if _, err := t.w.Write(m.Data); err != nil {
			return err
		}
	}
	observeDelivery(t.m, msgs, live)
	return t.rc.Flush()
}

// ending gives the end of the response (the last chunk and the trailer,
// written once the handler returns) a write deadline of its own: the one
// of the last message has passed if the stream was quiet since.
func (t *textSink) ending() {
	_ = t.rc.SetWriteDeadline(time.Now().Add(t.timeout))
}

// page writes a cached history page's raw data, decoded once per page.
func (t *textSink) Page(p *hub.Page) error {
	text, err := p.TextData()
	if err != nil {
		return err
	}
	_ = t.rc.SetWriteDeadline(time.Now().Add(t.timeout))
	if _, err := t.w.Write(text); err != nil {
		return err
	}
	t.m.delivered.Add(float64(p.Count()))
	return t.rc.Flush()
}

func (t *textSink) Live(int64) error { return nil }

func (t *textSink) End(int64) error { return nil }

// helloTracker records whether the sink's hello (the response header) was
// sent.
type helloTracker struct {
	hub.Sink
	started *bool
}

func (h *helloTracker) Hello(i hub.HelloInfo) error {
	*h.started = true
	return h.Sink.Hello(i)
}
