package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// CrossOrigin refuses state-changing requests (anything but GET, HEAD and
// OPTIONS) sent by a browser from another origin, such as a no-preflight
// text/plain form POST: the checks of net/http.CrossOriginProtection
// (Sec-Fetch-Site, else Origin against Host), trusting besides the
// server's own origin the same origins as the WebSocket allow-list. It is
// safe for concurrent use.
type CrossOrigin struct {
	cop      *http.CrossOriginProtection
	patterns []string
}

// NewCrossOrigin returns a CrossOrigin trusting allowedOrigins: host
// patterns in path.Match syntax ("app.example.com", "*.example.com:8443"),
// matched case-insensitively against the Origin's host[:port], or against
// its scheme://host[:port] when the pattern contains "://" — as
// coder/websocket's AcceptOptions.OriginPatterns, so that the same list
// means the same thing for WebSockets and for POSTs. "*" trusts every
// origin, which turns the protection off.
func NewCrossOrigin(allowedOrigins []string) (*CrossOrigin, error) {
	c := &CrossOrigin{cop: http.NewCrossOriginProtection()}
	for _, p := range allowedOrigins {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" {
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("auth: allowed origin %q is not a valid pattern: %w", p, err)
		}
		c.patterns = append(c.patterns, p)
	}
	return c, nil
}

// ErrCrossOrigin is the error Check returns (wrapped) for a refused
// cross-origin request.
var ErrCrossOrigin = errors.New("auth: cross-origin request refused")

// Check returns nil if r may be served, or an error wrapping
// ErrCrossOrigin with a message for people.
func (c *CrossOrigin) Check(r *http.Request) error {
	if c.cop.Check(r) == nil {
		return nil
	}
	origin := r.Header.Get("Origin")
	if origin != "" && c.trusted(origin) {
		return nil
	}
	if origin == "" || origin == "null" {
		return fmt.Errorf("%w: %s %s was sent from another site (Sec-Fetch-Site: %s)",
			ErrCrossOrigin, r.Method, r.URL.Path, r.Header.Get("Sec-Fetch-Site"))
	}
	return fmt.Errorf("%w: %s %s was sent from a page of %s, which is not an allowed origin",
		ErrCrossOrigin, r.Method, r.URL.Path, origin)
}

// trusted reports whether origin matches one of the patterns.
func (c *CrossOrigin) trusted(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	for _, p := range c.patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(p, strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

// Handler answers 403 with a JSON error to refused requests and passes the
// others to next.
func (c *CrossOrigin) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := c.Check(r); err != nil {
			writeJSONError(w, http.StatusForbidden, strings.TrimPrefix(err.Error(), "auth: "))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// GuardConfig configures a Guard. The zero value allows every host and
// trusts no other origin.
type GuardConfig struct {
	// AllowedHosts is the Host allow-list (see NewHostList). Nil or empty:
	// every host. In open mode on loopback use LoopbackHosts.
	AllowedHosts []string
	// AllowedOrigins are the other origins trusted for state-changing
	// requests (see NewCrossOrigin): pass the WebSocket allow-list.
	AllowedOrigins []string
	// Logger receives one line per refused request (debug level; its
	// path, never its query, which may hold a token). Default: discard.
	Logger *slog.Logger
}

// Guard is the middleware that protects the whole server: the Host
// allow-list (421), then the cross-origin check (403). It is safe for
// concurrent use.
type Guard struct {
	hosts  *HostList // nil: every host
	origin *CrossOrigin
	log    *slog.Logger
}

// NewGuard returns a Guard for cfg, or an error for a bad host or origin.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	g := &Guard{log: cfg.Logger}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.AllowedHosts) > 0 {
		h, err := NewHostList(cfg.AllowedHosts)
		if err != nil {
			return nil, err
		}
		g.hosts = h
	}
	o, err := NewCrossOrigin(cfg.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	g.origin = o
	return g, nil
}

// Handler wraps next (the server's mux) with the Guard's checks.
func (g *Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.hosts != nil && !g.hosts.Allowed(r.Host) {
			g.refused(r, "host not allowed")
			writeJSONError(w, http.StatusMisdirectedRequest, hostMessage(r.Host))
			return
		}
		if err := g.origin.Check(r); err != nil {
			g.refused(r, "cross-origin")
			writeJSONError(w, http.StatusForbidden, strings.TrimPrefix(err.Error(), "auth: "))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refused logs a refused request at debug level: anyone can send them, and
// a flood must not fill the log. It logs the path and never the query: a
// token may hide there in spellings no redaction foresees (";token=",
// "token%zz=").
func (g *Guard) refused(r *http.Request, why string) {
	if !g.log.Enabled(r.Context(), slog.LevelDebug) {
		return
	}
	g.log.LogAttrs(r.Context(), slog.LevelDebug, "request refused",
		slog.String("why", why), slog.String("method", r.Method), slog.String("host", r.Host),
		slog.String("origin", r.Header.Get("Origin")), slog.String("path", r.URL.Path))
}
