package ws

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/durable"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wire"
)

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
	allowed := s.authorizePublish(w, r)
	if allowed == nil {
		return
	}
	var req createRequest
	body, ok := s.readBody(w, r, 4096, "request body is larger than 4096 bytes")
	if !ok {
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
	if req.ID != "" && !hub.ValidID(req.ID) {
		writeError(w, http.StatusBadRequest, hub.IDError(req.ID))
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
	if !allowed(req.ID) {
		return
	}
	if req.ID == "" {
		req.ID = newID()
	}
	if !s.q.allowCreate(w, r) {
		return
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
	Channels []hub.ChannelInfo `json:"channels"`
	Next     string            `json:"next"`
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// The cursor is the id a previous page ended with: anything else (a
	// NUL, bytes that are not UTF-8) is bad input, which no store is asked.
	after := q.Get("after")
	if after != "" && !hub.ValidID(after) {
		writeError(w, http.StatusBadRequest, "after must be a channel id (the next of a previous page): "+hub.IDError(after))
		return
	}
	if !s.authorize(w, r, auth.Admin, "", false) {
		return
	}
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

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if !s.authorize(w, r, auth.Subscribe, id, false) {
		return
	}
	info, err := s.hub.Info(r.Context(), id)
	if err != nil {
		s.fail(w, r, err, id)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// handleDelete serves DELETE /channels/{id}: 204 once the channel and its
// history are deleted.
func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if !s.authorize(w, r, auth.Admin, id, false) {
		return
	}
	if err := s.hub.Delete(r.Context(), id); err != nil {
		s.fail(w, r, err, id)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type seqResponse struct {
	Seq int64 `json:"seq"`
}

// seqError is an error about a message that was accepted as seq.
type seqError struct {
	Error string `json:"error"`
	Seq   int64  `json:"seq"`
}

// readMessage reads a message body, enforcing the size bound and the body
// timeout, and UTF-8 unless channel id carries bytes.
func (s *Server) readMessage(w http.ResponseWriter, r *http.Request, id string) ([]byte, bool) {
	data, ok := s.readBody(w, r, int64(s.cfg.MaxMessageBytes), fmt.Sprintf("message is larger than the limit of %d bytes", s.cfg.MaxMessageBytes))
	if !ok {
		return nil, false
	}
	if !utf8.Valid(data) {
		if info, err := s.hub.Info(r.Context(), id); err == nil && persist.BinaryType(info.ContentType) {
			return data, true
		}
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
	producer, err := durable.ParseProducer(r.Header)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.authorize(w, r, auth.Publish, id, false) {
		return
	}
	data, ok := s.readMessage(w, r, id)
	if !ok {
		return
	}
	if producer != nil {
		s.appendIdempotent(w, r, id, data, producer)
		return
	}
	seq, err := s.hub.Append(r.Context(), id, data, wait)
	var pwe *hub.PersistWaitError
	switch {
	case err == nil:
	case errors.As(err, &pwe):
		// Accepted and buffered; persisted later. Say which seq to look for.
		writeJSON(w, http.StatusGatewayTimeout, seqError{Error: err.Error(), Seq: seq})
		return
	case seq != 0 && errors.Is(err, hub.ErrShuttingDown):
		// Appended, but not confirmed durable before shutdown.
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, seqError{
			Error: fmt.Sprintf("server is shutting down; message %d may not be persisted", seq), Seq: seq})
		return
	default:
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
	if !s.authorize(w, r, auth.Publish, id, false) {
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
	// Encoding is "base64" for a binary channel: every data is base64.
	Encoding string           `json:"encoding,omitempty"`
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
	if !s.authorize(w, r, auth.Subscribe, id, false) {
		return
	}
	msgs, ct, err := s.hub.HistoryTyped(r.Context(), id, from, limit)
	if err != nil {
		s.fail(w, r, err, id)
		return
	}
	// A text channel's message that is not valid UTF-8 (stored before the
	// edge refused such bodies) cannot be a JSON string byte for byte: its
	// page is base64, as a binary channel's.
	binary := persist.BinaryType(ct) || slices.ContainsFunc(msgs, func(m persist.Message) bool { return !utf8.Valid(m.Data) })
	resp := historyResponse{Messages: make([]historyMessage, len(msgs)), Next: from}
	if binary {
		resp.Encoding = wire.EncodingBase64
	}
	for i, m := range msgs {
		d := string(m.Data)
		if binary {
			d = base64.StdEncoding.EncodeToString(m.Data)
		}
		resp.Messages[i] = historyMessage{Seq: m.Seq, Time: m.Time, Data: d}
		resp.Next = m.Seq
	}
	writeJSON(w, http.StatusOK, resp)
}

// appendIdempotent appends one message for an idempotent producer: a retry
// of a request already accepted answers 204 and appends nothing; a fenced
// epoch answers 403 and a sequence gap 409, as in Durable Streams.
func (s *Server) appendIdempotent(w http.ResponseWriter, r *http.Request, id string, data []byte, p *durable.Producer) {
	if s.cfg.Streams == nil {
		writeError(w, http.StatusNotImplemented, "idempotent producers are not enabled on this server")
		return
	}
	res, err := s.cfg.Streams.Append(r.Context(), id, durable.Append{Messages: [][]byte{data}, Producer: p})
	var stale *durable.StaleEpochError
	var gap *durable.SeqGapError
	switch {
	case err == nil:
	case errors.As(err, &stale):
		w.Header().Set("Producer-Epoch", strconv.FormatInt(stale.Current, 10))
		writeError(w, http.StatusForbidden, err.Error())
		return
	case errors.As(err, &gap):
		w.Header().Set("Producer-Expected-Seq", strconv.FormatInt(gap.Expected, 10))
		w.Header().Set("Producer-Received-Seq", strconv.FormatInt(gap.Received, 10))
		writeError(w, http.StatusConflict, err.Error())
		return
	case errors.Is(err, durable.ErrNewEpochSeq), errors.As(err, new(*durable.BadRequestError)):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, durable.ErrPersistTimeout):
		// Accepted with the producer's state; a retry is a duplicate.
		writeJSON(w, http.StatusGatewayTimeout, seqError{Error: err.Error(), Seq: res.Seq})
		return
	case errors.Is(err, durable.ErrNotFound):
		s.fail(w, r, hub.ErrNotFound, id)
		return
	case errors.Is(err, durable.ErrClosed):
		s.fail(w, r, hub.ErrChannelClosed, id)
		return
	default:
		// A hub error the adapter marked as one to retry later.
		var u interface {
			Unavailable() bool
			Unwrap() error
		}
		if errors.As(err, &u) {
			err = u.Unwrap()
		}
		s.fail(w, r, err, id)
		return
	}
	w.Header().Set("Producer-Epoch", strconv.FormatInt(p.Epoch, 10))
	w.Header().Set("Producer-Seq", strconv.FormatInt(res.ProducerSeq, 10))
	if res.Duplicate {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, seqResponse{Seq: res.Seq})
}
