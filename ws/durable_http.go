package ws

import (
	"net/http"
	"strings"
	"time"

	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/durable"
	"github.com/messages-server/messages/ws/hub"
)

// durablePrefix is where the Durable Streams protocol is served.
const durablePrefix = "/v1/stream/"

// minStreamTime is the least validity a token must have left to open a
// Durable Streams event stream.
const minStreamTime = time.Second

// durableHandler serves the Durable Streams protocol over the server's
// streams.Backend, with the same token rights as the rest of the API:
// reading a stream (GET, HEAD) needs subscribe, and a token may come as
// ?token= on GET, for EventSource; creating and appending (PUT, POST) need
// publish, and forking also subscribe on the source; deleting needs admin,
// like DELETE /channels/{id}. CORS preflights pass. A request's syntax (the
// stream name, the headers and query its method reads) is checked before
// its token, as on the rest of the API. The per-client quotas apply as on
// the rest of the API too: a PUT that creates a stream counts as a channel
// creation (see servePut), and a long-poll or SSE read as a streaming
// connection while it lasts. A long-poll or SSE read ends when its token
// expires (see serveLive).
func (s *Server) durableHandler() http.Handler {
	h := durable.NewHandler(durable.HandlerConfig{
		Backend: s.cfg.Streams, Prefix: durablePrefix, LongPollTimeout: s.cfg.LongPollTimeout,
		Logger: s.cfg.Logger, MaxAppendBytes: max(s.cfg.MaxMessageBytes, 1<<20), BodyTimeout: s.cfg.BodyTimeout,
		AuthorizeFork: s.authorizeFork, MaxCatchupBytes: s.cfg.MaxCatchupBytes, Interrupted: answerExpired,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			h.ServeHTTP(w, r)
			return
		}
		if !h.CheckRequest(w, r) {
			return
		}
		name := strings.TrimPrefix(r.URL.Path, durablePrefix)
		if !hub.ValidID(name) {
			writeError(w, http.StatusBadRequest, hub.IDError(name))
			return
		}
		ok := true
		var until time.Time // when a live read's token expires
		switch r.Method {
		case http.MethodGet:
			until, ok = s.authorizeUntil(w, r, auth.Subscribe, name, true)
		case http.MethodHead:
			ok = s.authorize(w, r, auth.Subscribe, name, false)
		case http.MethodPut, http.MethodPost:
			// A fork's source is checked by the handler (authorizeFork),
			// on the name it parsed and will read.
			ok = s.authorize(w, r, auth.Publish, name, false)
		case http.MethodDelete:
			ok = s.authorize(w, r, auth.Admin, name, false)
		}
		if !ok {
			return
		}
		switch live := r.URL.Query().Get("live"); {
		case r.Method == http.MethodPut:
			s.servePut(w, r, h, name)
		case r.Method == http.MethodGet && (live == "long-poll" || live == "sse"):
			s.serveLive(w, r, h, live, until)
		default:
			h.ServeHTTP(w, r)
		}
	})
}

// serveLive serves a long-poll or SSE read, which counts as a streaming
// connection of its client while it lasts, and lasts no longer than its
// token (until; zero: no token expires). At the token's expiry an SSE
// response ends, as it does at the end of its lifetime: the client comes
// back from its offset, with a fresh token. A long-poll still waiting is
// answered 401, as a request with an expired token is (answerExpired), and
// serves nothing that came after: the client polls again from the same
// offset with a fresh token. A token about to expire cannot open an event
// stream: it is refused.
func (s *Server) serveLive(w http.ResponseWriter, r *http.Request, h http.Handler, live string, until time.Time) {
	done, ok := s.q.acquireConn(w, r)
	if !ok {
		return
	}
	defer done()
	if live == "sse" && !until.IsZero() && time.Until(until) < minStreamTime {
		auth.WriteError(w, auth.ExpiredError("the token expires within a second: an event stream needs a fresh one"))
		return
	}
	ctx, cancel := untilExpiry(r.Context(), until)
	defer cancel()
	h.ServeHTTP(w, r.WithContext(ctx))
}

// servePut serves a PUT against its client's creation budget
// (-create-rate, -create-burst). Only a PUT answered 200 (the stream
// existed, as asked) created nothing for sure, and it costs nothing: a
// client that PUTs its stream again on every reconnect is not throttled.
// Every other PUT costs a creation. The creation is taken before the PUT
// runs and given back if it answers 200, so that concurrent PUTs cannot
// create more than the budget; a client whose budget is spent may still
// PUT a stream that exists (anything else is 429), and if that PUT does
// not answer 200 after all (it asks for another configuration, or the
// stream was deleted meanwhile and the PUT created it again) the creation
// is charged as a debt on its budget. A client that owes a creation gets
// 429 for every PUT until the debt is paid back at the creation rate: at
// most one creation can be made without paying (a stream deleted or
// expired between the look and the PUT), not one per such race.
func (s *Server) servePut(w http.ResponseWriter, r *http.Request, h http.Handler, name string) {
	ip := s.q.clientIP(r)
	paid, retry := s.q.takeCreate(ip)
	if !paid {
		if s.q.owes(ip) {
			s.q.refuseCreate(w, ip, retry)
			return
		}
		if _, err := s.cfg.Streams.Stat(r.Context(), name); err != nil {
			s.q.refuseCreate(w, ip, retry)
			return
		}
	}
	sw := &statusWriter{ResponseWriter: w}
	h.ServeHTTP(sw, r)
	switch existed := sw.status == http.StatusOK; {
	case existed && paid:
		s.q.refundCreate(ip)
	case !existed && !paid:
		s.q.oweCreate(ip)
	}
}

// answerExpired answers a Durable Streams request whose context ended
// because its token expired (see untilExpiry) with 401, as a request with
// an expired token is answered; it reports false for a context that ended
// otherwise (the client went away).
func answerExpired(w http.ResponseWriter, r *http.Request) bool {
	if !tokenExpired(r.Context()) {
		return false
	}
	auth.WriteError(w, auth.ExpiredError("the token of this read expired before it was answered: "+
		"read again from the same offset with a fresh token"))
	return true
}

// authorizeFork checks that a PUT may read source, the stream it forks
// from, as the Durable Streams handler parsed it from Stream-Forked-From:
// the name the fork will read, in whatever spelling the header gave it.
func (s *Server) authorizeFork(w http.ResponseWriter, r *http.Request, source string) bool {
	if !hub.ValidID(source) {
		writeError(w, http.StatusBadRequest, "Stream-Forked-From: "+hub.IDError(source))
		return false
	}
	return s.authorize(w, r, auth.Subscribe, source, false)
}
