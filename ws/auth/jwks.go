package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// jwks holds the public keys of a JWK Set. Keys from a URL are refreshed by
// jwkset's goroutine until stop.
type jwks struct {
	kf     keyfunc.Keyfunc
	cancel context.CancelFunc // stops the refresh; no-op for a file
}

// Defaults for fetching a JWKS URL.
const (
	defaultJWKSRefresh = time.Hour
	jwksHTTPTimeout    = 10 * time.Second
	// unknownKIDEvery bounds the fetches a token with an unknown key id
	// causes; anyone can send such a token.
	unknownKIDEvery = time.Minute
)

func loadJWKS(ctx context.Context, cfg Config, log *slog.Logger) (*jwks, error) {
	var (
		k   jwks
		err error
	)
	where := cfg.JWKS
	if strings.HasPrefix(where, "http://") || strings.HasPrefix(where, "https://") {
		k.kf, k.cancel, err = jwksFromURL(ctx, cfg, log)
		where = RedactURLString(where)
	} else {
		k.cancel = func() {}
		k.kf, err = jwksFromFile(where)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS %s: %w", where, scrubbed(err, cfg.JWKS))
	}
	keys, err := k.kf.Storage().KeyReadAll(ctx)
	if err == nil && !slices.ContainsFunc(keys, func(j jwkset.JWK) bool { return verifies(j.Key()) }) {
		err = errors.New("it holds no usable key: an RSA, P-256 EC or Ed25519 key for RS256, ES256 or EdDSA")
	}
	if err != nil {
		k.cancel()
		return nil, fmt.Errorf("auth: JWKS %s: %w", where, err)
	}
	return &k, nil
}

func jwksFromFile(path string) (keyfunc.Keyfunc, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kf, err := keyfunc.NewJWKSetJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	return kf, nil
}

func jwksFromURL(ctx context.Context, cfg Config, log *slog.Logger) (keyfunc.Keyfunc, context.CancelFunc, error) {
	ctx, cancel := context.WithCancel(ctx)
	refresh := cfg.JWKSRefresh
	if refresh <= 0 {
		refresh = defaultJWKSRefresh
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: jwksHTTPTimeout}
	}
	fail := false
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKS}, keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: &fail,
		RefreshInterval:           refresh,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(unknownKIDEvery), 1),
		RateLimitWaitMax:          jwksHTTPTimeout,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			u = RedactURLString(u)
			return func(ctx context.Context, err error) {
				if ctx.Err() != nil && errors.Is(err, context.Canceled) {
					return // stopped
				}
				log.Error("JWKS refresh failed; keeping the keys already known", slog.String("url", u), slog.Any("err", scrubbed(err, cfg.JWKS)))
			}
		},
	})
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return kf, cancel, nil
}

// verifies reports whether key can check RS256, ES256 or EdDSA signatures.
func verifies(key any) bool {
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public() // a private key given by mistake still works
	}
	switch k := key.(type) {
	case *rsa.PublicKey, ed25519.PublicKey:
		return true
	case *ecdsa.PublicKey:
		return k.Curve == elliptic.P256()
	}
	return false
}

// keyfunc returns the key for t from the set; ctx bounds a fetch for an
// unknown key id.
func (k *jwks) keyfunc(ctx context.Context) jwt.Keyfunc { return k.kf.KeyfuncCtx(ctx) }

func (k *jwks) stop() { k.cancel() }

// scrubbed returns err with rawURL, which may hold a credential in its
// query, replaced by its redacted form in the text.
func scrubbed(err error, rawURL string) error {
	red := RedactURLString(rawURL)
	if red == rawURL || !strings.Contains(err.Error(), rawURL) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), rawURL, red))
}
