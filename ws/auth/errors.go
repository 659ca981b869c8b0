package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// Sentinel errors, matched with errors.Is on the *Error the Authorizer
// returns.
var (
	// ErrNoToken: the request carries no token (401, no error code).
	ErrNoToken = errors.New("auth: no token")
	// ErrInvalidToken: the token is malformed, badly signed, signed with an
	// algorithm that is not accepted, expired, not yet valid, from another
	// issuer or for another audience (when these are checked) or has bad
	// claims (401, error="invalid_token").
	ErrInvalidToken = errors.New("auth: invalid token")
	// ErrExpired: the token's exp has passed. It is also ErrInvalidToken.
	ErrExpired = errors.New("auth: token expired")
	// ErrBadRequest: the token was sent in more than one place (400,
	// error="invalid_request").
	ErrBadRequest = errors.New("auth: bad token request")
	// ErrForbidden: the token is valid but lacks the right (403,
	// error="insufficient_scope").
	ErrForbidden = errors.New("auth: forbidden")
)

// Error is an authorization failure. Use errors.Is with the sentinel errors
// to tell the kinds apart, Status for the HTTP status, and WriteError to
// answer it.
type Error struct {
	kind   error
	msg    string
	expiry bool
	err    error
}

func newError(kind error, msg string, cause error) *Error {
	return &Error{kind: kind, msg: msg, err: cause}
}

// ExpiredError is the refusal (401, invalid_token; it matches ErrExpired)
// of a token that was valid when checked but expired, or is about to,
// before the stream it opened could start; msg says so to the client.
func ExpiredError(msg string) *Error {
	e := newError(ErrInvalidToken, msg, nil)
	e.expiry = true
	return e
}

// Error returns a message for people; it never contains the token.
func (e *Error) Error() string { return e.msg }

// Unwrap returns the underlying cause (a jwt or JWKS error), if any.
func (e *Error) Unwrap() error { return e.err }

// Is matches the error's kind; an expired token is also ErrInvalidToken.
func (e *Error) Is(target error) bool {
	return target == e.kind || (e.expiry && target == ErrExpired)
}

// Status returns the HTTP status for the error: 400, 401 or 403.
func (e *Error) Status() int {
	switch e.kind {
	case ErrBadRequest:
		return http.StatusBadRequest
	case ErrForbidden:
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// code is the RFC 6750 §3.1 error code; "" when no token was sent.
func (e *Error) code() string {
	switch e.kind {
	case ErrInvalidToken:
		return "invalid_token"
	case ErrBadRequest:
		return "invalid_request"
	case ErrForbidden:
		return "insufficient_scope"
	}
	return ""
}

// challenge is the WWW-Authenticate value for the error (RFC 6750 §3).
func (e *Error) challenge() string {
	var b strings.Builder
	b.WriteString(`Bearer realm="messages"`)
	if c := e.code(); c != "" {
		b.WriteString(`, error="` + c + `", error_description="` + quotable(e.msg) + `"`)
	}
	return b.String()
}

// quotable keeps the characters RFC 6750 allows in error_description
// (%x20-21 / %x23-5B / %x5D-7E): no quote, no backslash, printable ASCII.
func quotable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '\''
		}
		return r
	}, s)
}

// WriteError answers err as JSON {"error": "..."}. An *Error gets its status
// and a WWW-Authenticate: Bearer challenge (RFC 6750 §3); any other
// error is answered 500 without its text.
func WriteError(w http.ResponseWriter, err error) {
	status, msg := http.StatusInternalServerError, "internal error"
	var ae *Error
	if errors.As(err, &ae) {
		status, msg = ae.Status(), ae.msg
		w.Header().Set("WWW-Authenticate", ae.challenge())
		w.Header().Set("Cache-Control", "no-store")
	}
	writeJSONError(w, status, msg)
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
