package ws

import (
	"errors"
	"net/http"

	"github.com/messages-server/messages/ws/auth"
)

// authorize checks that r may use right on channel (see auth.Authorizer;
// queryToken also accepts ?token= on GET). A refused request is answered
// (401, 403 or 400, with a WWW-Authenticate challenge) and authorize
// returns false. Without an Authorizer (open mode) every request passes.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, right auth.Right, channel string, queryToken bool) bool {
	_, err := s.cfg.Auth.Check(r, right, channel, queryToken)
	if err != nil {
		auth.WriteError(w, err)
		return false
	}
	return true
}

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
