package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/messages-server/messages/ws/auth"
)

// Default listen addresses: open mode stays on loopback unless told
// otherwise; with tokens the server is meant to be reached.
const (
	openDefaultAddr  = "127.0.0.1:3000"
	tokenDefaultAddr = ":3000"
)

// authConfig is the part of the configuration about tokens, open mode,
// cross-site requests and DNS rebinding (docs/SECURITY.md).
type authConfig struct {
	jwtSecret       string
	jwtJWKS         string
	jwtIssuer       string // "": iss not checked
	jwtAudience     string // "": aud not checked
	publicSubscribe bool
	allowedHosts    string
	insecureOpen    bool
	// listenIP is the loopback IP address the server listens on in open
	// mode, if it listens on one ("127.0.0.2"): its default Host
	// allow-list includes it, so the viewer URL it prints works.
	listenIP string
}

// open reports whether no key is configured: every request is allowed.
func (c authConfig) open() bool { return c.jwtSecret == "" && c.jwtJWKS == "" }

// addAuthFlags declares the flags of c on fs, with their environment
// fallbacks.
func addAuthFlags(fs *flag.FlagSet, c *authConfig, env envVars) {
	fs.StringVar(&c.jwtSecret, "jwt-secret", env.str("JWT_SECRET", ""), "HS256 secret of the tokens, at least 32 bytes, e.g. from openssl rand -base64 32; prefer the env, flags show in ps (env JWT_SECRET)")
	fs.StringVar(&c.jwtJWKS, "jwt-jwks", env.str("JWT_JWKS", ""), "public keys of RS256, ES256 and EdDSA tokens: a JWK Set URL (refreshed hourly) or file (env JWT_JWKS)")
	fs.StringVar(&c.jwtIssuer, "jwt-issuer", env.str("JWT_ISSUER", ""), "if set, a token's iss must be exactly this; unset, iss is not checked (env JWT_ISSUER)")
	fs.StringVar(&c.jwtAudience, "jwt-audience", env.str("JWT_AUDIENCE", ""), "if set, a token's aud (a string or an array) must include this; unset, aud is not checked (env JWT_AUDIENCE)")
	fs.BoolVar(&c.publicSubscribe, "public-subscribe", env.boolean("PUBLIC_SUBSCRIBE"), "anyone may read every channel without a token; writing still needs one (env PUBLIC_SUBSCRIBE)")
	fs.StringVar(&c.allowedHosts, "allowed-hosts", env.str("ALLOWED_HOSTS", ""), "comma-separated Host names the server answers for, any port; others get 421; * for any. Default: localhost, 127.0.0.1, [::1] and the loopback IP listened on in open mode, any with tokens (env ALLOWED_HOSTS)")
	fs.BoolVar(&c.insecureOpen, "insecure-open", env.boolean("INSECURE_OPEN"), "allow open mode (no -jwt-secret or -jwt-jwks: anyone may do anything) on an address that is not loopback (env INSECURE_OPEN)")
}

// finish sets the default listen address, which depends on the mode, and
// checks that open mode is not exposed by mistake and is not asked to
// check an issuer or audience.
func (c *authConfig) finish(addr *string) error {
	if c.jwtSecret != "" && len(c.jwtSecret) < auth.MinSecretBytes {
		return fmt.Errorf("-jwt-secret (JWT_SECRET) has %d bytes; use at least %d (for example: openssl rand -base64 32)",
			len(c.jwtSecret), auth.MinSecretBytes)
	}
	if c.open() && (c.jwtIssuer != "" || c.jwtAudience != "") {
		var given []string
		if c.jwtIssuer != "" {
			given = append(given, "-jwt-issuer (JWT_ISSUER)")
		}
		if c.jwtAudience != "" {
			given = append(given, "-jwt-audience (JWT_AUDIENCE)")
		}
		return fmt.Errorf("%s given without a key to check tokens with: set -jwt-secret (JWT_SECRET) or -jwt-jwks (JWT_JWKS); "+
			"without one the server is in open mode and looks at no token", strings.Join(given, " and "))
	}
	if *addr == "" {
		*addr = tokenDefaultAddr
		if c.open() {
			*addr = openDefaultAddr
		}
	}
	if c.open() && !c.insecureOpen && !auth.IsLoopback(*addr) {
		return fmt.Errorf("open mode refuses to listen on %s, which is not a loopback address: "+
			"without a key anyone who reaches the port could read, write, close and list every channel. "+
			"Set a key so that requests need tokens (JWT_SECRET=\"$(openssl rand -base64 32)\", or -jwt-jwks), "+
			"listen on 127.0.0.1, or, to accept an open server, add -insecure-open (INSECURE_OPEN=true)", *addr)
	}
	if host, _, err := net.SplitHostPort(*addr); err == nil && c.open() && auth.IsLoopback(*addr) {
		if _, err := netip.ParseAddr(host); err == nil {
			c.listenIP = host
		}
	}
	if _, err := auth.NewHostList(c.hosts()); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "auth: "))
	}
	return nil
}

// hosts is the Host allow-list: the given one, else loopback names (and
// the loopback IP listened on) in open mode and every host (nil) with
// tokens.
func (c authConfig) hosts() []string {
	if h := splitList(c.allowedHosts); len(h) > 0 {
		return h
	}
	if c.open() {
		h := auth.LoopbackHosts()
		if c.listenIP != "" && !slices.Contains(h, c.listenIP) && !slices.Contains(h, "["+c.listenIP+"]") {
			h = append(h, c.listenIP)
		}
		return h
	}
	return nil
}

// newAuth returns the Authorizer and the Guard for c. Close the
// Authorizer when done; ctx bounds its JWKS refreshes.
func newAuth(ctx context.Context, c authConfig, allowedOrigins []string, log *slog.Logger) (*auth.Authorizer, *auth.Guard, error) {
	a, err := auth.New(ctx, auth.Config{
		Secret: []byte(c.jwtSecret), JWKS: c.jwtJWKS,
		Issuer: c.jwtIssuer, Audience: c.jwtAudience,
		PublicSubscribe: c.publicSubscribe, Logger: log,
	})
	if err != nil {
		return nil, nil, errors.New(strings.TrimPrefix(err.Error(), "auth: "))
	}
	g, err := auth.NewGuard(auth.GuardConfig{AllowedHosts: c.hosts(), AllowedOrigins: allowedOrigins, Logger: log})
	if err != nil {
		a.Close()
		return nil, nil, errors.New(strings.TrimPrefix(err.Error(), "auth: "))
	}
	hosts := "any"
	if h := c.hosts(); len(h) > 0 {
		hosts = strings.Join(h, ",")
	}
	if a.Open() {
		log.Warn("open mode: no -jwt-secret or -jwt-jwks, so every request is allowed without a token; set JWT_SECRET to require tokens",
			slog.String("allowed_hosts", hosts))
	} else {
		log.Info("tokens required", slog.Any("algorithms", a.Methods()),
			slog.String("issuer", c.jwtIssuer), slog.String("audience", c.jwtAudience),
			slog.Bool("public_subscribe", c.publicSubscribe), slog.String("allowed_hosts", hosts))
	}
	return a, g, nil
}
