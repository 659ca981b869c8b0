package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/messages-server/messages/ws/wire"
)

// ErrReset matches (with errors.Is) the *ServerError of a reset: the channel
// restarted in a new epoch and lost messages the client had already seen.
// The error's LastSeq is the last durable seq of the old epoch; the client
// must start again from 0, or from at most LastSeq with the new epoch.
var ErrReset = errors.New("client: channel reset")

// ErrDeleted matches (with errors.Is) the *ServerError of a deleted
// channel: its history is gone and a subscription never resumes after it.
// A channel created later under the same id is another channel, with an
// epoch above every epoch of the deleted one.
var ErrDeleted = errors.New("client: channel deleted")

// ErrSubscriptionClosed is returned by Next after Close.
var ErrSubscriptionClosed = errors.New("client: subscription closed")

// ErrUnauthorized and ErrForbidden match (with errors.Is) the
// *ServerError of a handshake the server refused with 401 (no token, or a
// malformed, badly signed or expired one) or 403 (a token without the
// subscribe right on the channel). ErrUnauthorized also matches the end of
// a subscription whose token expired (wire.CodeUnauthorized): subscribe
// again with a fresh token, from LastSeq and Epoch. They are never retried,
// except an expired subscription with Options.Resume and
// Options.TokenSource set, which redials with a fresh token.
var (
	ErrUnauthorized = errors.New("client: unauthorized")
	ErrForbidden    = errors.New("client: forbidden")
)

// ServerError is an error frame sent by the server (or, when the server
// closed without one, derived from the close status or the HTTP status of a
// refused handshake). Use errors.As to read it, errors.Is(err, ErrReset)
// for a reset.
type ServerError struct {
	// Code is one of wire.CodeBadRequest, wire.CodeUnauthorized,
	// wire.CodeNotFound, wire.CodeReset, wire.CodeDeleted,
	// wire.CodeInternal, wire.CodeUnavailable, "http_NNN" for a handshake
	// refused with HTTP status NNN that has no wire code (such as
	// http_401), or another code a newer server sends.
	Code string
	// Message is the server's human-readable explanation.
	Message string
	// LastSeq is, for a reset, the last durable seq of the old epoch.
	LastSeq int64
}

// Error implements error.
func (e *ServerError) Error() string {
	s := "client: server error " + e.Code
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Code == wire.CodeReset {
		s += " (last durable seq " + strconv.FormatInt(e.LastSeq, 10) + ")"
	}
	return s
}

// Is reports whether e is a reset (target ErrReset), a deleted channel
// (ErrDeleted), a handshake refused with 401 or an expired token
// (ErrUnauthorized), or a handshake refused with 403 (ErrForbidden).
func (e *ServerError) Is(target error) bool {
	switch target {
	case ErrReset:
		return e.Code == wire.CodeReset
	case ErrDeleted:
		return e.Code == wire.CodeDeleted
	case ErrUnauthorized:
		return e.Code == codeHTTP(http.StatusUnauthorized) || e.Code == wire.CodeUnauthorized
	case ErrForbidden:
		return e.Code == codeHTTP(http.StatusForbidden)
	}
	return false
}

// codeHTTP is the Code of a handshake refused with an HTTP status that has
// no wire code.
func codeHTTP(status int) string { return "http_" + strconv.Itoa(status) }

// ProtocolError reports a server that broke the protocol: a seq that is not
// the one expected (a gap when Got > Expected, a duplicate when Got <
// Expected), or a frame out of place. It is never retried.
type ProtocolError struct {
	// Channel is the subscribed channel.
	Channel string
	// Expected and Got are the seq expected and the one received; both are
	// zero when the error is not about a seq.
	Expected, Got int64
	// Reason says what went wrong.
	Reason string
}

// Error implements error.
func (e *ProtocolError) Error() string {
	if e.Expected == 0 && e.Got == 0 {
		return fmt.Sprintf("client: protocol error on channel %s: %s", e.Channel, e.Reason)
	}
	return fmt.Sprintf("client: protocol error on channel %s: %s: expected seq %d, got %d", e.Channel, e.Reason, e.Expected, e.Got)
}

// httpError turns a refused handshake into a *ServerError.
func httpError(resp *http.Response, dialErr error) error {
	var body struct {
		Error string `json:"error"`
	}
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		_ = json.Unmarshal(b, &body)
	}
	msg := body.Error
	if msg == "" {
		msg = dialErr.Error()
	}
	code := codeHTTP(resp.StatusCode)
	switch resp.StatusCode {
	case http.StatusBadRequest:
		code = wire.CodeBadRequest
	case http.StatusNotFound:
		code = wire.CodeNotFound
	case http.StatusConflict:
		code = wire.CodeReset
	case http.StatusGone:
		code = wire.CodeDeleted
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		code = wire.CodeUnavailable
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout:
		code = wire.CodeInternal
	}
	return &ServerError{Code: code, Message: msg}
}

// dropError marks a connection that went away: redialing may help.
type dropError struct{ err error }

func (e *dropError) Error() string { return e.err.Error() }
func (e *dropError) Unwrap() error { return e.err }

// resumable reports whether a redial may get past err.
func resumable(err error) bool {
	var d *dropError
	if errors.As(err, &d) {
		return true
	}
	var se *ServerError
	if errors.As(err, &se) {
		return se.Code == wire.CodeUnavailable || se.Code == wire.CodeInternal
	}
	return false
}
