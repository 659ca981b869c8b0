package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Right is what a request needs from a token. Its zero value is invalid.
type Right int

const (
	// Subscribe reads a channel: GET /ws, GET /?id=, GET /channels/{id} and
	// its history.
	Subscribe Right = iota + 1
	// Publish writes a channel: POST /channels (create), append, close and
	// the reference POST /.
	Publish
	// Admin is for operations on every channel: GET /channels and DELETE.
	// An admin token holds every right on every channel.
	Admin
)

// String returns the right's name as it appears in claims and messages.
func (r Right) String() string {
	switch r {
	case Subscribe:
		return "subscribe"
	case Publish:
		return "publish"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("Right(%d)", int(r))
}

// Claims are the claims of a messages token. The registered claims exp
// (required), nbf and iat are checked by the Authorizer, and iss and aud
// when it is configured to; sub names the bearer. Publish and Subscribe
// list channel patterns; Admin grants every right.
//
// A channel pattern is an exact channel id ("room-1"), a prefix ending in
// "*" ("room-*" matches every id starting with "room-"), or "*" alone, which
// matches every channel. A "*" anywhere but at the end makes the token
// invalid.
type Claims struct {
	// Publish lists the channels the bearer may create, append to and close.
	Publish []string `json:"publish,omitempty"`
	// Subscribe lists the channels the bearer may read.
	Subscribe []string `json:"subscribe,omitempty"`
	// Admin grants every right on every channel, plus listing and deleting.
	Admin bool `json:"admin,omitempty"`
	jwt.RegisteredClaims
}

// maxTime is the last second a time claim may name: 9999-12-31T23:59:59Z.
const maxTime = 253402300799

// rangeError reports a time claim (exp, nbf or iat) outside [0, maxTime]:
// jwt turns such a number into a wrong time (exp 1e20 expired long ago),
// so the claims' checks by jwt say nothing sensible about it.
type rangeError struct{ claim string }

func (e *rangeError) Error() string {
	return fmt.Sprintf("claim %q is out of range: a time is seconds since 1970, before the year 10000", e.claim)
}

// UnmarshalJSON reads claims, refusing a time claim (exp, nbf, iat, in
// any case, as encoding/json matches names) that is not a JSON number
// (RFC 7519 §2, NumericDate): jwt would read "exp":"1999999999", a
// string, as a time.
func (c *Claims) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for k, v := range raw {
		if !strings.EqualFold(k, "exp") && !strings.EqualFold(k, "nbf") && !strings.EqualFold(k, "iat") {
			continue
		}
		if v = bytes.TrimSpace(v); len(v) == 0 || !(v[0] == '-' || '0' <= v[0] && v[0] <= '9') {
			return fmt.Errorf("claim %q is not a number: a time claim is seconds since 1970 as a JSON number", k)
		}
	}
	type plain Claims // without this method
	return json.Unmarshal(b, (*plain)(c))
}

// Validate checks the range of the time claims and the channel patterns;
// jwt calls it after the registered claims are checked.
func (c *Claims) Validate() error {
	for _, d := range []struct {
		claim string
		t     *jwt.NumericDate
	}{{"exp", c.ExpiresAt}, {"nbf", c.NotBefore}, {"iat", c.IssuedAt}} {
		if d.t != nil && (d.t.Unix() < 0 || d.t.Unix() > maxTime) {
			return &rangeError{claim: d.claim}
		}
	}
	for _, l := range []struct {
		name     string
		patterns []string
	}{{"publish", c.Publish}, {"subscribe", c.Subscribe}} {
		for _, p := range l.patterns {
			if err := ValidPattern(p); err != nil {
				return fmt.Errorf("claim %q: %w", l.name, err)
			}
		}
	}
	return nil
}

// ValidPattern reports whether p is a channel pattern: a non-empty exact id,
// a prefix followed by one "*" at the end, or "*".
func ValidPattern(p string) error {
	if p == "" {
		return errors.New("empty channel pattern")
	}
	if i := strings.IndexByte(p, '*'); i >= 0 && i != len(p)-1 {
		return fmt.Errorf("channel pattern %q has a \"*\" before its end; only a trailing \"*\" is allowed", p)
	}
	return nil
}

// MatchPattern reports whether channel matches pattern (see Claims). The
// empty channel, which stands for a channel the server will name, matches
// only "*".
func MatchPattern(pattern, channel string) bool {
	if pattern == "*" {
		return true
	}
	if channel == "" {
		return false
	}
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(channel, prefix)
	}
	return pattern == channel
}

// Allows reports whether the claims grant right on channel. channel is
// ignored for Admin; for Publish, "" means a channel the server will name,
// which needs the pattern "*".
func (c *Claims) Allows(right Right, channel string) bool {
	if c.Admin {
		return true
	}
	var patterns []string
	switch right {
	case Subscribe:
		patterns = c.Subscribe
	case Publish:
		patterns = c.Publish
	default:
		return false
	}
	for _, p := range patterns {
		if MatchPattern(p, channel) {
			return true
		}
	}
	return false
}

// LogValue logs the subject and the rights, never the token.
func (c *Claims) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("sub", c.Subject),
		slog.Bool("admin", c.Admin),
		slog.Any("publish", c.Publish),
		slog.Any("subscribe", c.Subscribe),
	)
}

// SignHS256 returns a token for c signed with secret (HS256), for tests and
// the messages-token command. c.ExpiresAt must be set: the server refuses
// tokens without exp.
func SignHS256(secret []byte, c *Claims) (string, error) {
	if err := checkSecret(secret); err != nil {
		return "", err
	}
	if c.ExpiresAt == nil {
		return "", errors.New("auth: a token needs an expiry (exp)")
	}
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// MinSecretBytes is the shortest HS256 secret accepted: RFC 7518 §3.2 asks
// for a key at least as long as the hash output (256 bits).
const MinSecretBytes = 32

func checkSecret(secret []byte) error {
	if len(secret) < MinSecretBytes {
		return fmt.Errorf("auth: the HS256 secret has %d bytes; use at least %d (for example: openssl rand -base64 32)", len(secret), MinSecretBytes)
	}
	return nil
}

// Leeway is the clock skew tolerated when checking exp, nbf and iat: a token
// is accepted up to Leeway after its exp, and from Leeway before its nbf or
// iat.
const Leeway = 30 * time.Second
