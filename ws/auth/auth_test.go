package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestNewRefusesShortSecret(t *testing.T) {
	_, err := New(context.Background(), Config{Secret: []byte("short")})
	if err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("New with a 5-byte secret: %v, want an error asking for 32 bytes", err)
	}
}

func TestOpenMode(t *testing.T) {
	for name, a := range map[string]*Authorizer{"zero": {}, "nil": nil, "New": newAuthorizer(t, Config{})} {
		if !a.Open() {
			t.Errorf("%s: Open() = false", name)
		}
		for _, right := range []Right{Subscribe, Publish, Admin} {
			r := request("POST", "/channels", "garbage")
			if err := a.Authorize(r, right, "c"); err != nil {
				t.Errorf("%s: Authorize(%v) in open mode = %v", name, right, err)
			}
		}
		if _, err := a.Verify(context.Background(), "x"); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: Verify in open mode = %v, want ErrInvalidToken", name, err)
		}
	}
	if newAuthorizer(t, Config{Secret: testSecret}).Open() {
		t.Error("Open() with a secret = true")
	}
}

// TestTokens runs every kind of token against one HS256 Authorizer.
func TestTokens(t *testing.T) {
	a := newAuthorizer(t, Config{Secret: testSecret})
	now := time.Now()
	hs := func(c jwt.Claims) string { return sign(t, jwt.SigningMethodHS256, testSecret, c, "") }
	reader := claims("alice", nil, []string{"news-*"}, false)
	expired := claims("bob", nil, []string{"*"}, false)
	expired.ExpiresAt = jwt.NewNumericDate(now.Add(-2 * time.Minute))
	expired.IssuedAt = jwt.NewNumericDate(now.Add(-time.Hour))
	withinLeeway := claims("bob", nil, []string{"*"}, false)
	withinLeeway.ExpiresAt = jwt.NewNumericDate(now.Add(-Leeway / 3))
	notYet := claims("carol", nil, []string{"*"}, false)
	notYet.NotBefore = jwt.NewNumericDate(now.Add(10 * time.Minute))
	nbfWithinLeeway := claims("carol", nil, []string{"*"}, false)
	nbfWithinLeeway.NotBefore = jwt.NewNumericDate(now.Add(Leeway / 3))
	future := claims("dave", nil, []string{"*"}, false)
	future.IssuedAt = jwt.NewNumericDate(now.Add(10 * time.Minute))
	noExp := claims("erin", nil, []string{"*"}, false)
	noExp.ExpiresAt = nil
	badPattern := claims("frank", nil, []string{"a*b"}, false)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mapClaims := func(m jwt.MapClaims) jwt.MapClaims {
		m["exp"] = now.Add(time.Hour).Unix()
		return m
	}

	for _, tc := range []struct {
		name    string
		token   string
		right   Right
		channel string
		want    error // nil, ErrNoToken, ErrInvalidToken, ErrExpired or ErrForbidden
		msg     string
	}{
		{"valid", hs(reader), Subscribe, "news-1", nil, ""},
		{"under-privileged: channel", hs(reader), Subscribe, "sport-1", ErrForbidden, `no subscribe right on channel "sport-1"`},
		{"under-privileged: right", hs(reader), Publish, "news-1", ErrForbidden, "no publish right"},
		{"under-privileged: admin", hs(reader), Admin, "", ErrForbidden, "no admin right"},
		{"under-privileged: unnamed", hs(claims("x", []string{"a-*"}, nil, false)), Publish, "", ErrForbidden, `("*")`},
		{"admin", hs(claims("root", nil, nil, true)), Admin, "", nil, ""},
		{"expired", hs(expired), Subscribe, "c", ErrExpired, "expired at"},
		{"expired within leeway", hs(withinLeeway), Subscribe, "c", nil, ""},
		{"not yet valid", hs(notYet), Subscribe, "c", ErrInvalidToken, "not valid before"},
		{"nbf within leeway", hs(nbfWithinLeeway), Subscribe, "c", nil, ""},
		{"issued in the future", hs(future), Subscribe, "c", ErrInvalidToken, "issued in the future"},
		{"no exp", hs(noExp), Subscribe, "c", ErrInvalidToken, "no expiry"},
		{"exp out of range", hs(jwt.MapClaims{"exp": 1e20, "subscribe": []string{"*"}}), Subscribe, "c", ErrInvalidToken, "the token's exp is out of range"},
		{"exp out of range below", hs(jwt.MapClaims{"exp": -1e20, "subscribe": []string{"*"}}), Subscribe, "c", ErrInvalidToken, "the token's exp is out of range"},
		{"nbf out of range", hs(mapClaims(jwt.MapClaims{"nbf": -1e20, "subscribe": []string{"*"}})), Subscribe, "c", ErrInvalidToken, "the token's nbf is out of range"},
		{"iat out of range", hs(mapClaims(jwt.MapClaims{"iat": 1e20, "subscribe": []string{"*"}})), Subscribe, "c", ErrInvalidToken, "the token's iat is out of range"},
		{"bad pattern", hs(badPattern), Subscribe, "c", ErrInvalidToken, `"a*b"`},
		{"publish not a list", hs(mapClaims(jwt.MapClaims{"publish": "room"})), Publish, "room", ErrInvalidToken, "malformed"},
		{"admin not a bool", hs(mapClaims(jwt.MapClaims{"admin": "true"})), Admin, "", ErrInvalidToken, "malformed"},
		{"sub not a string", hs(mapClaims(jwt.MapClaims{"sub": 7, "subscribe": []string{"*"}})), Subscribe, "c", ErrInvalidToken, "malformed"},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte("another secret, also 32 bytes long!"), reader, ""), Subscribe, "news-1", ErrInvalidToken, "signature is invalid"},
		{"tampered claims", tamper(t, hs(reader)), Subscribe, "news-1", ErrInvalidToken, "signature is invalid"},
		{"HS384", sign(t, jwt.SigningMethodHS384, testSecret, reader, ""), Subscribe, "news-1", ErrInvalidToken, "algorithm is not accepted; accepted: HS256"},
		{"RS256 without JWKS", sign(t, jwt.SigningMethodRS256, rsaKey, reader, ""), Subscribe, "news-1", ErrInvalidToken, "algorithm is not accepted"},
		{"ES256 without JWKS", sign(t, jwt.SigningMethodES256, ecKey, reader, ""), Subscribe, "news-1", ErrInvalidToken, "algorithm is not accepted"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, reader, ""), Subscribe, "news-1", ErrInvalidToken, "algorithm is not accepted"},
		{"alg none, no signature", noneToken(t, reader), Subscribe, "news-1", ErrInvalidToken, "algorithm is not accepted"},
		{"unknown alg", unknownAlg(t, hs(reader)), Subscribe, "news-1", ErrInvalidToken, ""},
		{"two segments", "abc.def", Subscribe, "c", ErrInvalidToken, "malformed"},
		{"not base64", "a$b.c$d.e$f", Subscribe, "c", ErrInvalidToken, "malformed"},
		{"no token", "", Subscribe, "c", ErrNoToken, "needs a token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := a.Authorize(request("GET", "/channels/c", tc.token), tc.right, tc.channel)
			checkErr(t, err, tc.want, tc.msg)
			if strings.Contains(errString(err), tc.token) && tc.token != "" {
				t.Errorf("the error repeats the token: %v", err)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// checkErr checks err's kind, status and message.
func checkErr(t *testing.T, err, want error, msg string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("error %v, want none", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %T is not an *Error", err)
	}
	status := http.StatusUnauthorized
	if want == ErrForbidden {
		status = http.StatusForbidden
	}
	if want == ErrBadRequest {
		status = http.StatusBadRequest
	}
	if ae.Status() != status {
		t.Errorf("status %d, want %d", ae.Status(), status)
	}
	if want == ErrExpired && !errors.Is(err, ErrInvalidToken) {
		t.Errorf("an expired token's error is not ErrInvalidToken")
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("message %q does not say %q", err.Error(), msg)
	}
}

// tamper changes one claim of a signed token, keeping its signature.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	c := claims("alice", nil, []string{"*"}, true)
	b, _ := json.Marshal(c)
	parts[1] = b64(b)
	return strings.Join(parts, ".")
}

// noneToken builds an unsigned token by hand: header {"alg":"none"}, an
// empty signature.
func noneToken(t *testing.T, c *Claims) string {
	t.Helper()
	b, _ := json.Marshal(c)
	return b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64(b) + "."
}

// unknownAlg replaces a token's header with an algorithm jwt does not know.
func unknownAlg(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	parts[0] = b64([]byte(`{"alg":"HS999","typ":"JWT"}`))
	return strings.Join(parts, ".")
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// TestKeyConfusion signs an HS256 token with the RSA public key (the
// classic RS/HS confusion attack) and sends it to a server that knows
// that public key from a JWKS and also has a secret: it must be refused.
func TestKeyConfusion(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	file := writeJWKS(t, jwkOf(t, &rsaKey.PublicKey, "rsa1", "RS256"))
	for name, cfg := range map[string]Config{
		"JWKS only":          {JWKS: file},
		"JWKS and a secret":  {JWKS: file, Secret: testSecret},
		"JWKS, no alg field": {JWKS: writeJWKS(t, jwkOf(t, &rsaKey.PublicKey, "rsa1", ""))},
	} {
		t.Run(name, func(t *testing.T) {
			a := newAuthorizer(t, cfg)
			c := claims("mallory", []string{"*"}, []string{"*"}, true)
			for _, key := range [][]byte{pubPEM, der} {
				for _, kid := range []string{"rsa1", ""} {
					tok := sign(t, jwt.SigningMethodHS256, key, c, kid)
					_, err := a.Verify(context.Background(), tok)
					if !errors.Is(err, ErrInvalidToken) {
						t.Errorf("HS256 signed with the public key (kid %q): %v, want ErrInvalidToken", kid, err)
					}
				}
			}
			// The genuine RS256 token passes.
			if _, err := a.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, rsaKey, c, "rsa1")); err != nil {
				t.Errorf("RS256: %v", err)
			}
		})
	}
}

func TestTransport(t *testing.T) {
	a := newAuthorizer(t, Config{Secret: testSecret})
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims("alice", nil, []string{"*"}, false), "")
	header := func(r *http.Request, v ...string) *http.Request {
		for _, s := range v {
			r.Header.Add("Authorization", s)
		}
		return r
	}
	for _, tc := range []struct {
		name  string
		r     *http.Request
		query bool
		want  error
		msg   string
	}{
		{"header", request("GET", "/ws?id=c", tok), false, nil, ""},
		{"lower-case scheme", header(request("GET", "/", ""), "bearer "+tok), false, nil, ""},
		{"query on a query path", request("GET", "/ws?id=c&token="+tok, ""), true, nil, ""},
		{"query on HEAD", request("HEAD", "/?id=c&token="+tok, ""), true, nil, ""},
		{"query elsewhere", request("GET", "/channels/c?token="+tok, ""), false, ErrNoToken, "does not take a token in the query"},
		{"query on a POST", request("POST", "/?token="+tok, ""), true, ErrNoToken, "does not take a token in the query"},
		{"header and query", request("GET", "/ws?token="+tok, tok), true, ErrBadRequest, "not both"},
		{"two query tokens", request("GET", "/ws?token="+tok+"&token="+tok, ""), true, ErrBadRequest, "one token"},
		{"two headers", header(request("GET", "/", ""), "Bearer "+tok, "Bearer "+tok), false, ErrBadRequest, "one Authorization"},
		{"empty query token", request("GET", "/ws?token=", ""), true, ErrInvalidToken, "empty"},
		{"basic auth", header(request("GET", "/", ""), "Basic YTpi"), false, ErrInvalidToken, "Bearer <token>"},
		{"empty bearer", header(request("GET", "/", ""), "Bearer "), false, ErrInvalidToken, "Bearer <token>"},
		{"no token, query path", request("GET", "/ws", ""), true, ErrNoToken, "or a token query parameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.query {
				err = a.AuthorizeWithQueryToken(tc.r, Subscribe, "c")
			} else {
				err = a.Authorize(tc.r, Subscribe, "c")
			}
			checkErr(t, err, tc.want, tc.msg)
		})
	}
}

func TestPublicSubscribe(t *testing.T) {
	a := newAuthorizer(t, Config{Secret: testSecret, PublicSubscribe: true})
	if err := a.Authorize(request("GET", "/channels/c", ""), Subscribe, "c"); err != nil {
		t.Errorf("subscribe without a token: %v", err)
	}
	if err := a.AuthorizeWithQueryToken(request("GET", "/ws?id=c", ""), Subscribe, "c"); err != nil {
		t.Errorf("WebSocket without a token: %v", err)
	}
	checkErr(t, a.Authorize(request("POST", "/channels", ""), Publish, "c"), ErrNoToken, "")
	checkErr(t, a.Authorize(request("GET", "/channels", ""), Admin, ""), ErrNoToken, "")
	reader := sign(t, jwt.SigningMethodHS256, testSecret, claims("r", nil, []string{"*"}, false), "")
	checkErr(t, a.Authorize(request("POST", "/channels", reader), Publish, "c"), ErrForbidden, "")
}

func TestUnknownRight(t *testing.T) {
	a := newAuthorizer(t, Config{Secret: testSecret})
	err := a.Authorize(request("GET", "/", ""), Right(0), "c")
	var ae *Error
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("Authorize(Right(0)) = %v, want a plain error", err)
	}
}

func TestWriteError(t *testing.T) {
	a := newAuthorizer(t, Config{Secret: testSecret})
	expired := claims("bob", nil, []string{"*"}, false)
	expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	reader := claims("alice", nil, []string{"news"}, false)
	hs := func(c *Claims) string { return sign(t, jwt.SigningMethodHS256, testSecret, c, "") }
	checked := newAuthorizer(t, Config{Secret: testSecret, Issuer: "https://id.example/", Audience: "messages"})
	otherService := claims("alice", nil, []string{"*"}, false)
	otherService.Issuer, otherService.Audience = "https://id.example/", jwt.ClaimStrings{"billing"}
	for _, tc := range []struct {
		name      string
		err       error
		status    int
		challenge string
	}{
		{"missing", a.Authorize(request("GET", "/", ""), Subscribe, "c"), 401, `Bearer realm="messages"`},
		{"malformed", a.Authorize(request("GET", "/", "x.y.z"), Subscribe, "c"), 401, `Bearer realm="messages", error="invalid_token", error_description="the token is malformed`},
		{"expired", a.Authorize(request("GET", "/", hs(expired)), Subscribe, "c"), 401, `Bearer realm="messages", error="invalid_token", error_description="the token expired at `},
		{"forbidden", a.Authorize(request("GET", "/", hs(reader)), Subscribe, "c"), 403, `Bearer realm="messages", error="insufficient_scope", error_description="the token of 'alice' has no subscribe right on channel 'c'"`},
		{"another audience", checked.Authorize(request("GET", "/", hs(otherService)), Subscribe, "c"), 401, `Bearer realm="messages", error="invalid_token", error_description="the token's audience (aud) does not include 'messages', this server's audience"`},
		{"two places", a.AuthorizeWithQueryToken(request("GET", "/ws?token=a", "b"), Subscribe, "c"), 400, `Bearer realm="messages", error="invalid_request"`},
		{"other error", errors.New("boom"), 500, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil {
				t.Fatal("no error to write: the request was allowed")
			}
			w := httptest.NewRecorder()
			WriteError(w, tc.err)
			if w.Code != tc.status {
				t.Errorf("status %d, want %d", w.Code, tc.status)
			}
			got := w.Header().Get("WWW-Authenticate")
			if !strings.HasPrefix(got, tc.challenge) || (tc.challenge == "") != (got == "") {
				t.Errorf("WWW-Authenticate %q, want prefix %q", got, tc.challenge)
			}
			if tc.name == "missing" && strings.Contains(got, "error=") {
				t.Errorf("WWW-Authenticate %q has an error code for a request without a token (RFC 6750 §3.1)", got)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var body struct{ Error string }
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == "" {
				t.Fatalf("body %q: %v", w.Body.String(), err)
			}
			if tc.status == 500 && body.Error != "internal error" {
				t.Errorf("a non-auth error leaks its text: %q", body.Error)
			}
			if tc.status != 500 && body.Error != tc.err.Error() {
				t.Errorf("body error %q, want %q", body.Error, tc.err.Error())
			}
		})
	}
}

// TestTokenNotLogged checks that refused tokens are logged without the
// token, whether it came in the header or the query.
func TestTokenNotLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := newAuthorizer(t, Config{Secret: testSecret, Logger: log})
	expired := claims("bob", nil, []string{"*"}, false)
	expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	tok := sign(t, jwt.SigningMethodHS256, testSecret, expired, "")
	_ = a.Authorize(request("GET", "/channels/c", tok), Subscribe, "c")
	_ = a.AuthorizeWithQueryToken(request("GET", "/ws?id=c&token="+tok, ""), Subscribe, "c")
	if !strings.Contains(buf.String(), "token refused") {
		t.Fatalf("nothing logged: %q", buf.String())
	}
	sig := tok[strings.LastIndexByte(tok, '.')+1:]
	if strings.Contains(buf.String(), sig) {
		t.Errorf("the log holds the token: %s", buf.String())
	}
}

func TestCheckReturnsClaims(t *testing.T) {
	a := newAuthorizer(t, Config{Secret: testSecret, PublicSubscribe: true})
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims("alice", []string{"a"}, nil, false), "")
	c, err := a.Check(request("POST", "/channels/a/messages", tok), Publish, "a", false)
	if err != nil || c == nil || c.Subject != "alice" || c.ExpiresAt == nil {
		t.Fatalf("Check = %+v, %v; want alice's claims", c, err)
	}
	if c, err := a.Check(request("GET", "/channels/a", ""), Subscribe, "a", false); c != nil || err != nil {
		t.Fatalf("public subscribe: Check = %+v, %v; want nil, nil", c, err)
	}
}

// TestIssuerAudience checks iss and aud against Authorizers with and
// without Config.Issuer and Config.Audience: unset, any value passes (as
// before); set, iss must be exactly the issuer and aud, a string or an
// array, must include the audience, or the token gets a 401 saying which.
func TestIssuerAudience(t *testing.T) {
	const iss, aud = "https://id.example/", "messages"
	cfgs := []struct {
		name string
		cfg  Config
	}{
		{"unchecked", Config{Secret: testSecret}},
		{"issuer", Config{Secret: testSecret, Issuer: iss}},
		{"audience", Config{Secret: testSecret, Audience: aud}},
		{"both", Config{Secret: testSecret, Issuer: iss, Audience: aud}},
	}
	// Every ok or message is in the order of cfgs; "" means accepted.
	const (
		wrongIss = "the token's issuer (iss) is not the one this server accepts"
		noIss    = "the token has no issuer (iss)"
		wrongAud = `the token's audience (aud) does not include "messages"`
		noAud    = `the token has no audience (aud); this server accepts only tokens whose aud includes "messages"`
	)
	now := time.Now()
	for _, tc := range []struct {
		name   string
		claims jwt.MapClaims // exp and subscribe added
		want   [4]string
	}{
		{"neither", jwt.MapClaims{}, [4]string{"", noIss, noAud, noIss}},
		{"right iss", jwt.MapClaims{"iss": iss}, [4]string{"", "", noAud, noAud}},
		{"wrong iss", jwt.MapClaims{"iss": "https://other.example/"}, [4]string{"", wrongIss, noAud, wrongIss}},
		{"iss differs in case", jwt.MapClaims{"iss": "https://ID.example/"}, [4]string{"", wrongIss, noAud, wrongIss}},
		{"iss with a trailing space", jwt.MapClaims{"iss": iss + " "}, [4]string{"", wrongIss, noAud, wrongIss}},
		{"empty iss", jwt.MapClaims{"iss": ""}, [4]string{"", noIss, noAud, noIss}},
		{"aud string", jwt.MapClaims{"aud": aud}, [4]string{"", noIss, "", noIss}},
		{"aud array", jwt.MapClaims{"aud": []string{"billing", aud}}, [4]string{"", noIss, "", noIss}},
		{"wrong aud string", jwt.MapClaims{"aud": "billing"}, [4]string{"", noIss, wrongAud, noIss}},
		{"wrong aud array", jwt.MapClaims{"aud": []string{"billing", "messages-admin"}}, [4]string{"", noIss, wrongAud, noIss}},
		{"empty aud array", jwt.MapClaims{"aud": []string{}}, [4]string{"", noIss, noAud, noIss}},
		{"right iss, aud string", jwt.MapClaims{"iss": iss, "aud": aud}, [4]string{"", "", "", ""}},
		{"right iss, aud array", jwt.MapClaims{"iss": iss, "aud": []string{aud, "billing"}}, [4]string{"", "", "", ""}},
		{"right iss, wrong aud", jwt.MapClaims{"iss": iss, "aud": []string{"billing"}}, [4]string{"", "", wrongAud, wrongAud}},
		{"wrong iss, right aud", jwt.MapClaims{"iss": "https://other.example/", "aud": aud}, [4]string{"", wrongIss, "", wrongIss}},
	} {
		tc.claims["exp"] = now.Add(time.Hour).Unix()
		tc.claims["subscribe"] = []string{"*"}
		tok := sign(t, jwt.SigningMethodHS256, testSecret, tc.claims, "")
		for i, c := range cfgs {
			t.Run(tc.name+"/"+c.name, func(t *testing.T) {
				err := newAuthorizer(t, c.cfg).Authorize(request("GET", "/channels/c", tok), Subscribe, "c")
				if tc.want[i] == "" {
					checkErr(t, err, nil, "")
					return
				}
				checkErr(t, err, ErrInvalidToken, tc.want[i])
				if strings.Contains(err.Error(), iss) {
					t.Errorf("the message names the issuer the server accepts: %v", err)
				}
			})
		}
	}

	t.Run("expired, for another issuer", func(t *testing.T) {
		// Refreshing would not help: the answer names the issuer and is
		// not ErrExpired.
		tok := sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{
			"iss": "https://other.example/", "exp": now.Add(-time.Hour).Unix(), "subscribe": []string{"*"},
		}, "")
		err := newAuthorizer(t, cfgs[3].cfg).Authorize(request("GET", "/channels/c", tok), Subscribe, "c")
		checkErr(t, err, ErrInvalidToken, wrongIss)
		if errors.Is(err, ErrExpired) {
			t.Errorf("%v is ErrExpired", err)
		}
	})
	t.Run("no exp, right iss and aud", func(t *testing.T) {
		tok := sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"iss": iss, "aud": aud, "subscribe": []string{"*"}}, "")
		err := newAuthorizer(t, cfgs[3].cfg).Authorize(request("GET", "/channels/c", tok), Subscribe, "c")
		checkErr(t, err, ErrInvalidToken, "no expiry (exp)")
	})
	t.Run("aud not a string", func(t *testing.T) {
		tok := sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"aud": 7, "exp": now.Add(time.Hour).Unix(), "subscribe": []string{"*"}}, "")
		for _, c := range cfgs {
			err := newAuthorizer(t, c.cfg).Authorize(request("GET", "/channels/c", tok), Subscribe, "c")
			checkErr(t, err, ErrInvalidToken, "malformed")
		}
	})
}

// TestIssuerAudienceJWKS is the case the checks are for: an identity
// provider signs tokens for several services with the keys of one JWKS,
// and a token it minted for another service must not open this one.
func TestIssuerAudienceJWKS(t *testing.T) {
	k := newTestKeys(t)
	a := newAuthorizer(t, Config{JWKS: writeJWKS(t, k.jwks(t)...), Issuer: "https://id.example/", Audience: "messages"})
	for _, tc := range []struct {
		aud  string
		want error
	}{{"messages", nil}, {"billing", ErrInvalidToken}} {
		c := claims("svc", nil, []string{"*"}, true)
		c.Issuer, c.Audience = "https://id.example/", jwt.ClaimStrings{tc.aud}
		tok := sign(t, jwt.SigningMethodES256, k.ec, c, "ec1")
		checkErr(t, a.Authorize(request("GET", "/channels", tok), Admin, ""), tc.want, "")
	}
}

// TestIssuerAudienceNeedAKey: an issuer or audience without a key would be
// open mode, where no token is checked at all; New refuses it.
func TestIssuerAudienceNeedAKey(t *testing.T) {
	for _, cfg := range []Config{{Issuer: "https://id.example/"}, {Audience: "messages"}} {
		if a, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "needs a key") {
			a.Close()
			t.Errorf("New(%+v) = %v, want an error saying a key is needed", cfg, err)
		}
	}
}

// TestTimeClaimsAreNumbers: exp, nbf and iat are JSON numbers (RFC 7519
// §2, NumericDate); a string holding a number, null, or another type is
// refused with 401 whatever the key's case, not read as a time.
func TestTimeClaimsAreNumbers(t *testing.T) {
	a := newAuthorizer(t, Config{Secret: testSecret})
	future := time.Now().Add(time.Hour).Unix()
	now := time.Now().Unix()
	good := jwt.MapClaims{"exp": future, "iat": now, "nbf": now, "admin": true}
	if err := a.Authorize(request("GET", "/channels", sign(t, jwt.SigningMethodHS256, testSecret, good, "")), Admin, ""); err != nil {
		t.Fatalf("numeric claims refused: %v", err)
	}
	for _, c := range []jwt.MapClaims{
		{"exp": strconv.FormatInt(future, 10), "admin": true},
		{"exp": future, "nbf": strconv.FormatInt(now, 10), "admin": true},
		{"exp": future, "iat": strconv.FormatInt(now, 10), "admin": true},
		{"exp": future, "EXP": strconv.FormatInt(future, 10), "admin": true},
		{"exp": nil, "admin": true},
		{"exp": []int64{future}, "admin": true},
		{"exp": true, "admin": true},
	} {
		tok := sign(t, jwt.SigningMethodHS256, testSecret, c, "")
		err := a.Authorize(request("GET", "/channels", tok), Admin, "")
		var e *Error
		if !errors.As(err, &e) || e.Status() != http.StatusUnauthorized {
			t.Errorf("claims %v: %v, want a 401", c, err)
		}
	}
}
