package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/messages-server/messages/ws/hub"
)

// isClientGone reports errors that mean the consumer went away.
func isClientGone(err error) bool {
	return errors.Is(err, context.Canceled)
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers status with a JSON error. A 503 or 429 says when to
// retry (Retry-After), unless the handler set it already.
func writeError(w http.ResponseWriter, status int, msg string) {
	if (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, errorBody{Error: msg})
}

// statusOf maps a hub error to an HTTP status and a message for people.
func statusOf(err error, id string) (int, string) {
	var fe *hub.FromError
	var be *hub.BadRequestError
	var se *hub.StoreError
	var re *hub.ResetError
	switch {
	case errors.Is(err, hub.ErrNotFound):
		return http.StatusNotFound, fmt.Sprintf("channel %q not found", id)
	case errors.Is(err, hub.ErrExists):
		return http.StatusConflict, fmt.Sprintf("channel %q already exists", id)
	case errors.Is(err, hub.ErrChannelDeleted):
		return http.StatusGone, fmt.Sprintf("channel %q was deleted", id)
	case errors.Is(err, hub.ErrChannelClosed):
		return http.StatusConflict, fmt.Sprintf("channel %q is closed", id)
	case errors.Is(err, hub.ErrGeneratorChannel):
		return http.StatusConflict, fmt.Sprintf("channel %q is written by its generator: producers cannot append to it or close it", id)
	case errors.Is(err, hub.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, err.Error()
	case errors.Is(err, hub.ErrTooManyChannels), errors.Is(err, hub.ErrGeneratorRate):
		return http.StatusTooManyRequests, err.Error()
	case errors.Is(err, hub.ErrOverloaded), errors.Is(err, hub.ErrShuttingDown), errors.Is(err, hub.ErrMoved),
		errors.Is(err, hub.ErrNoOwner), errors.Is(err, hub.ErrUncertain), errors.Is(err, hub.ErrCutOff):
		return http.StatusServiceUnavailable, err.Error()
	case errors.As(err, &fe), errors.As(err, &be):
		return http.StatusBadRequest, err.Error()
	case errors.As(err, &re):
		return http.StatusConflict, err.Error()
	case errors.Is(err, hub.ErrStoreTimeout):
		return http.StatusServiceUnavailable, "the database did not answer in time, retry later"
	case errors.As(err, &se):
		return http.StatusServiceUnavailable, "storage is unavailable, retry later"
	case errors.As(err, new(*hub.RecordRefusedError)):
		return http.StatusInternalServerError, err.Error()
	case errors.Is(err, hub.ErrChannelFailed):
		return http.StatusInternalServerError, fmt.Sprintf("channel %q failed on the server; the message may not be persisted", id)
	}
	return http.StatusInternalServerError, "internal error"
}

// StatusClientClosed is the status logged and counted, in the manner of
// nginx, for a request whose client went away before it was answered.
const StatusClientClosed = 499

// fail answers a request that the hub could not serve. A client that went
// away first is no server error: it is logged at debug level as 499.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error, id string) {
	status, msg := statusOf(err, id)
	if r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		status = StatusClientClosed
		s.log.Debug("client closed the request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.String("channel", id), slog.Int("status", status))
		s.m.httpErrors.WithLabelValues(strconv.Itoa(status)).Inc()
		w.WriteHeader(status) // read by no one, but logged by proxies
		return
	}
	if status >= 500 && !errors.Is(err, hub.ErrShuttingDown) && !errors.Is(err, hub.ErrOverloaded) {
		s.log.Error("request failed", slog.String("path", r.URL.Path), slog.String("channel", id), slog.Any("err", err))
	}
	s.m.httpErrors.WithLabelValues(strconv.Itoa(status)).Inc()
	writeError(w, status, msg)
}
