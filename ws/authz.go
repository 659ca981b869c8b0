package ws

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/messages-server/messages/ws/auth"
)

// authorize checks that r may use right on channel (see auth.Authorizer;
// queryToken also accepts ?token= on GET). A refused request is answered
// (401, 403 or 400, with a WWW-Authenticate challenge) and authorize
// returns false. Without an Authorizer (open mode) every request passes.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, right auth.Right, channel string, queryToken bool) bool {
	_, ok := s.authorizeUntil(w, r, right, channel, queryToken)
	return ok
}

// authorizeUntil is authorize for a stream that outlives its request: it
// also returns when the token stops being valid (its exp, plus the clock
// skew the check tolerates), or the zero time when nothing expires (open
// mode, public reads).
func (s *Server) authorizeUntil(w http.ResponseWriter, r *http.Request, right auth.Right, channel string, queryToken bool) (time.Time, bool) {
	c, err := s.cfg.Auth.Check(r, right, channel, queryToken)
	if err != nil {
		auth.WriteError(w, err)
		return time.Time{}, false
	}
	if c == nil || c.ExpiresAt == nil {
		return time.Time{}, true
	}
	return c.ExpiresAt.Add(auth.Leeway), true
}

// errTokenExpired is the cause of a stream's context that ended because
// the token that opened the stream expired.
var errTokenExpired = errors.New("the token expired")

// untilExpiry returns a context derived from parent that ends, with cause
// errTokenExpired, at until; the zero until never ends it.
func untilExpiry(parent context.Context, until time.Time) (context.Context, context.CancelFunc) {
	if until.IsZero() {
		return context.WithCancel(parent)
	}
	return context.WithDeadlineCause(parent, until, errTokenExpired)
}

// tokenExpired reports whether ctx ended because the token expired.
func tokenExpired(ctx context.Context) bool { return errors.Is(context.Cause(ctx), errTokenExpired) }

// authorizePublish checks a publish request whose channel id is in its
// body, before the body is read: a request without a valid token is
// answered at once (and authorizePublish returns nil), so no body is read
// for it. The returned function then checks the id once it is known ("": a
// channel the server names, which needs publish "*"), answering a refusal
// itself.
func (s *Server) authorizePublish(w http.ResponseWriter, r *http.Request) func(id string) bool {
	c, err := s.cfg.Auth.Check(r, auth.Publish, "", false)
	if err == nil {
		// Open mode, or a token that may publish on every channel.
		return func(string) bool { return true }
	}
	if !errors.Is(err, auth.ErrForbidden) || c == nil {
		auth.WriteError(w, err)
		return nil
	}
	return func(id string) bool {
		if c.Allows(auth.Publish, id) {
			return true
		}
		// Check again for the refusal's message, which names the channel.
		return s.authorize(w, r, auth.Publish, id, false)
	}
}
