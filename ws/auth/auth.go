// Package auth checks bearer tokens and request origins for the messages
// server.
//
// An Authorizer verifies JWTs (HS256 with a shared secret, or RS256, ES256
// and EdDSA with public keys from a JWKS) and checks that their claims grant
// a Right on a channel. Without a key it is in open mode and allows
// everything. A Guard protects a handler against DNS rebinding (a Host
// allow-list) and cross-site requests (net/http.CrossOriginProtection).
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Config configures an Authorizer. The zero value is open mode: every
// request is allowed.
type Config struct {
	// Secret is the HS256 key, at least MinSecretBytes long. Empty: HS256
	// tokens are refused.
	Secret []byte
	// JWKS is where the public keys for RS256, ES256 and EdDSA tokens are:
	// an http:// or https:// URL, refreshed in the background, or the path
	// of a JWK Set file, read once. Empty: only HS256 (if Secret is set).
	JWKS string
	// JWKSRefresh is how often a JWKS URL is fetched again. A token whose
	// key id is unknown also triggers a fetch, at most once a minute.
	// Default: 1 hour.
	JWKSRefresh time.Duration
	// HTTPClient fetches a JWKS URL. Default: a client with a 10 s timeout.
	HTTPClient *http.Client
	// Issuer, if set, is the only iss a token may carry: a token without
	// iss, or with another, is refused. Set it when the keys are shared
	// with other services (an identity provider's JWKS), so that their
	// tokens are not taken for ours. Empty: iss is not checked. It needs
	// Secret or JWKS.
	Issuer string
	// Audience, if set, must be one of a token's aud (a string or an array
	// of strings, RFC 7519 §4.1.3): a token without aud, or whose aud does
	// not include it, is refused. Empty: aud is not checked. It needs
	// Secret or JWKS.
	Audience string
	// PublicSubscribe lets requests without a token read every channel.
	PublicSubscribe bool
	// Logger receives JWKS refresh failures and refused tokens (at debug
	// level, without the token). Default: discard.
	Logger *slog.Logger
}

// Authorizer checks the tokens of requests. It is safe for concurrent use.
// The zero value (and a nil *Authorizer) is in open mode.
type Authorizer struct {
	secret   []byte
	jwks     *jwks // nil without Config.JWKS
	methods  []string
	issuer   string // "" when not checked
	audience string // "" when not checked
	public   bool
	log      *slog.Logger
	parser   *jwt.Parser
}

// New returns an Authorizer for cfg. With a JWKS URL it fetches the keys
// before returning (an unreachable JWKS, or one without a usable key, is an
// error) and refreshes them until Close or until ctx is done.
func New(ctx context.Context, cfg Config) (*Authorizer, error) {
	a := &Authorizer{issuer: cfg.Issuer, audience: cfg.Audience, public: cfg.PublicSubscribe, log: cfg.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Secret) > 0 {
		if err := checkSecret(cfg.Secret); err != nil {
			return nil, err
		}
		a.secret = append([]byte(nil), cfg.Secret...)
		a.methods = append(a.methods, jwt.SigningMethodHS256.Alg())
	}
	if cfg.JWKS != "" {
		k, err := loadJWKS(ctx, cfg, a.log)
		if err != nil {
			return nil, err
		}
		a.jwks = k
		a.methods = append(a.methods, asymmetricMethods()...)
	}
	if len(a.methods) == 0 && (a.issuer != "" || a.audience != "") {
		return nil, errors.New("auth: an issuer or audience to check needs a key (Secret or JWKS): without one every request is allowed and no token is looked at")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(a.methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
	}
	// jwt checks iss and aud only when asked; an empty value must not ask,
	// since WithAudience("") would require an aud.
	if a.issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.issuer))
	}
	if a.audience != "" {
		opts = append(opts, jwt.WithAudience(a.audience))
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// asymmetricMethods returns the algorithms accepted with keys from a JWKS.
func asymmetricMethods() []string {
	return []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg(), jwt.SigningMethodEdDSA.Alg()}
}

// Close stops the background JWKS refresh, if any. The Authorizer keeps the
// keys it has.
func (a *Authorizer) Close() {
	if a != nil && a.jwks != nil {
		a.jwks.stop()
	}
}

// Open reports whether a is in open mode: no key is configured and every
// request is allowed.
func (a *Authorizer) Open() bool { return a == nil || len(a.methods) == 0 }

// Methods returns the accepted signing algorithms (empty in open mode).
func (a *Authorizer) Methods() []string {
	if a == nil {
		return nil
	}
	return append([]string(nil), a.methods...)
}

// Authorize checks that r carries, in its Authorization: Bearer header, a
// valid token granting right on channel (ignored for Admin; "" for a
// channel the server will name, which needs publish "*"). It returns nil or
// an *Error: ErrNoToken or ErrInvalidToken (401), ErrBadRequest (400) or
// ErrForbidden (403). In open mode, and for Subscribe with PublicSubscribe,
// it allows every request without looking at any token.
func (a *Authorizer) Authorize(r *http.Request, right Right, channel string) error {
	_, err := a.Check(r, right, channel, false)
	return err
}

// AuthorizeWithQueryToken is Authorize for the requests browsers cannot add
// headers to (GET /ws and the GET /?id= text stream): on a GET request it
// also accepts the token as the query parameter "token".
func (a *Authorizer) AuthorizeWithQueryToken(r *http.Request, right Right, channel string) error {
	_, err := a.Check(r, right, channel, true)
	return err
}

// Check is Authorize (queryToken false) or AuthorizeWithQueryToken
// (queryToken true) that also returns the token's claims, for a caller
// that uses its subject or its expiry. The claims are nil when no token was
// needed.
func (a *Authorizer) Check(r *http.Request, right Right, channel string, queryToken bool) (*Claims, error) {
	if right < Subscribe || right > Admin {
		return nil, fmt.Errorf("auth: unknown right %d", int(right))
	}
	if a.Open() || (right == Subscribe && a.public) {
		return nil, nil
	}
	tok, err := bearer(r, queryToken && (r.Method == http.MethodGet || r.Method == http.MethodHead))
	if err != nil {
		return nil, err
	}
	c, err := a.Verify(r.Context(), tok)
	if err != nil {
		a.log.LogAttrs(r.Context(), slog.LevelDebug, "token refused",
			slog.String("path", r.URL.Path), slog.Any("err", err))
		return nil, err
	}
	if !c.Allows(right, channel) {
		return c, newError(ErrForbidden, forbiddenMessage(c, right, channel), nil)
	}
	return c, nil
}

func forbiddenMessage(c *Claims, right Right, channel string) string {
	who := "the token"
	if c.Subject != "" {
		who = fmt.Sprintf("the token of %q", c.Subject)
	}
	switch {
	case right == Admin:
		return who + " has no admin right"
	case channel == "":
		return fmt.Sprintf("%s has no %s right on every channel (\"*\"), needed for a channel the server names", who, right)
	}
	return fmt.Sprintf("%s has no %s right on channel %q", who, right, channel)
}

// bearer extracts the token from the Authorization header or, if query is
// true, from the "token" query parameter.
func bearer(r *http.Request, query bool) (string, error) {
	var tok string
	h := r.Header.Values("Authorization")
	if len(h) > 1 {
		return "", newError(ErrBadRequest, "send one Authorization header, not several", nil)
	}
	if len(h) == 1 {
		scheme, t, ok := strings.Cut(strings.TrimSpace(h[0]), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", newError(ErrInvalidToken, "the Authorization header must be \"Bearer <token>\"", nil)
		}
		tok = strings.TrimSpace(t)
		if tok == "" {
			return "", newError(ErrInvalidToken, "the Authorization header has an empty bearer token", nil)
		}
	}
	qs, inQuery := r.URL.Query()["token"]
	switch {
	case inQuery && !query:
		return "", newError(ErrNoToken, fmt.Sprintf("%s %s does not take a token in the query; send it in an Authorization: Bearer header", r.Method, r.URL.Path), nil)
	case inQuery && tok != "":
		return "", newError(ErrBadRequest, "send the token either in the Authorization header or in the query, not both", nil)
	case inQuery && len(qs) > 1:
		return "", newError(ErrBadRequest, "send one token query parameter, not several", nil)
	case inQuery:
		tok = qs[0]
		if tok == "" {
			return "", newError(ErrInvalidToken, "the token query parameter is empty", nil)
		}
	}
	if tok == "" {
		msg := "this request needs a token: send an Authorization: Bearer header"
		if query {
			msg += " or a token query parameter"
		}
		return "", newError(ErrNoToken, msg, nil)
	}
	return tok, nil
}

// Verify checks a token's signature, algorithm and claims (iss and aud too
// when Config.Issuer and Config.Audience are set) and returns its claims,
// or an *Error (ErrInvalidToken; also ErrExpired when expired). ctx bounds
// a JWKS fetch for an unknown key id. In open mode every token is
// refused: there is no key to check it with.
func (a *Authorizer) Verify(ctx context.Context, token string) (*Claims, error) {
	if a.Open() {
		return nil, newError(ErrInvalidToken, "no key is configured to check tokens with", nil)
	}
	var c Claims
	_, err := a.parser.ParseWithClaims(token, &c, a.keyfunc(ctx))
	if err != nil {
		return nil, a.tokenError(err, &c)
	}
	return &c, nil
}

func (a *Authorizer) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		// HS256 only ever uses the secret and the others only the JWKS, so
		// a public key can never be taken for an HMAC secret.
		if t.Method == jwt.SigningMethodHS256 {
			if a.secret == nil {
				return nil, errors.New("no HS256 secret is configured")
			}
			return a.secret, nil
		}
		if a.jwks == nil {
			return nil, errors.New("no JWKS is configured")
		}
		return a.jwks.keyfunc(ctx)(t)
	}
}

// tokenError turns a jwt error into an *Error with a message for people.
func (a *Authorizer) tokenError(err error, c *Claims) *Error {
	e := newError(ErrInvalidToken, "", err)
	var re *rangeError
	// jwt reports a missing iss or aud, like a missing exp, as a required
	// claim missing: the claims tell which.
	missing := errors.Is(err, jwt.ErrTokenRequiredClaimMissing)
	switch {
	case errors.As(err, &re): // before exp's own check, which it voids
		e.msg = fmt.Sprintf("the token's %s is out of range: a time claim is seconds since 1970, before the year 10000", re.claim)
	// Issuer and audience before expiry: a token for another service is
	// refused as such, not as expired, since refreshing it would not help.
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), missing && a.issuer != "" && c.Issuer != a.issuer:
		e.msg = "the token's issuer (iss) is not the one this server accepts"
		if c.Issuer == "" {
			e.msg = "the token has no issuer (iss), and this server accepts only tokens from the issuer it is configured with"
		}
	case errors.Is(err, jwt.ErrTokenInvalidAudience), missing && a.audience != "" && !slices.Contains(c.Audience, a.audience):
		e.msg = fmt.Sprintf("the token's audience (aud) does not include %q, this server's audience", a.audience)
		if len(c.Audience) == 0 {
			e.msg = fmt.Sprintf("the token has no audience (aud); this server accepts only tokens whose aud includes %q", a.audience)
		}
	case errors.Is(err, jwt.ErrTokenExpired):
		e.expiry = true
		e.msg = withTime("the token has expired", "the token expired at %s", c.ExpiresAt)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		e.msg = "the token has no expiry (exp); every token needs one"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		e.msg = withTime("the token is not valid yet", "the token is not valid before %s", c.NotBefore)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		e.msg = "the token is issued in the future (iat); check the issuer's clock"
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		e.msg = "the token's claims are invalid: " + strings.TrimPrefix(detail(err), jwt.ErrTokenInvalidClaims.Error()+": ")
	case errors.Is(err, jwt.ErrTokenMalformed):
		e.msg = "the token is malformed: " + strings.TrimPrefix(detail(err), jwt.ErrTokenMalformed.Error()+": ")
	case strings.Contains(err.Error(), "signing method"): // not in WithValidMethods, or unknown to jwt
		e.msg = fmt.Sprintf("the token's algorithm is not accepted; accepted: %s", strings.Join(a.methods, ", "))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		e.msg = "the token's signature is invalid"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		e.msg = "the token cannot be verified: " + strings.TrimPrefix(detail(err), jwt.ErrTokenUnverifiable.Error()+": ")
	default:
		e.msg = "the token is invalid"
	}
	return e
}

// withTime is msg, or, when the token has the time t, format with t in
// RFC 3339 (UTC).
func withTime(msg, format string, t *jwt.NumericDate) string {
	if t == nil {
		return msg
	}
	return fmt.Sprintf(format, t.UTC().Format(time.RFC3339))
}

// detail returns jwt's text for err on one line.
func detail(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
