package client

import (
	"context"
	"net/http"
	"time"
)

// Defaults, used when the matching Options field is zero.
const (
	DefaultReadLimit         = 8 << 20
	DefaultResumeAttempts    = 10
	DefaultResumeMinBackoff  = 50 * time.Millisecond
	DefaultResumeMaxBackoff  = 5 * time.Second
	defaultReadAhead         = 16
	clientCloseHandshakeWait = 5 * time.Second
)

// Options configures Subscribe. The zero value subscribes from the
// beginning of the channel and does not resume after a drop.
type Options struct {
	// From is the last seq the client already has; delivery starts at
	// From+1. 0 means from the beginning.
	From int64
	// Epoch is the epoch from the hello frame of the connection that
	// delivered From; empty if unknown. With it the server can tell a resume
	// across a lost tail (ErrReset) from a normal one.
	Epoch string
	// Resume makes the subscription redial by itself after the connection
	// drops (network error, server going away, unavailable, internal error),
	// continuing from the last seq received with the current epoch, with
	// exponential backoff and full jitter between attempts. Next then returns
	// a new Hello event and carries on without a gap. Errors that a retry
	// cannot fix (not found, deleted, bad request, reset, protocol errors) are
	// returned as they are.
	Resume bool
	// ResumeAttempts bounds how many redials in a row may fail (or connect
	// without making progress) before Next gives up; 0 means
	// DefaultResumeAttempts.
	ResumeAttempts int
	// ResumeMinBackoff and ResumeMaxBackoff bound the wait before a redial;
	// zero means DefaultResumeMinBackoff and DefaultResumeMaxBackoff.
	ResumeMinBackoff, ResumeMaxBackoff time.Duration
	// HTTPClient performs the WebSocket handshakes; nil means
	// http.DefaultClient. A client whose transport dials from a chosen local
	// address spreads connections over several source addresses.
	HTTPClient *http.Client
	// HTTPHeader is added to every handshake request.
	HTTPHeader http.Header
	// Token is the bearer token of a server that requires one (a JWT with
	// the subscribe right on the channel), sent as "Authorization: Bearer"
	// on every handshake, redials included. Empty: none. A refused token
	// ends Subscribe (or Next, on a redial) with an error matching
	// ErrUnauthorized or ErrForbidden, as does the end of a subscription
	// whose token expired.
	Token string
	// TokenSource, if set, is called before every handshake, redials
	// included, for the token to send instead of Token (an empty one sends
	// none). With Resume, a subscription whose token expired then redials
	// by itself with the token TokenSource returns, and carries on without
	// a gap; an error from TokenSource ends the subscription with it. It is
	// called from Subscribe, then from the subscription's own goroutine.
	TokenSource func(ctx context.Context) (string, error)
	// ReadLimit is the largest frame accepted, in bytes; 0 means
	// DefaultReadLimit. A larger frame ends the subscription with an
	// error.
	ReadLimit int64
}
