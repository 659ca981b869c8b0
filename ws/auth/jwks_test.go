package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// jwkOf returns the JWK JSON of a public key with a key id and, if not
// empty, an alg.
func jwkOf(t *testing.T, pub crypto.PublicKey, kid, alg string) jwkset.JWKMarshal {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: jwkset.ALG(alg)},
	})
	if err != nil {
		t.Fatalf("JWK of %T: %v", pub, err)
	}
	return j.Marshal()
}

func jwksJSON(t *testing.T, keys ...jwkset.JWKMarshal) []byte {
	t.Helper()
	b, err := json.Marshal(jwkset.JWKSMarshal{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeJWKS writes a JWK Set file and returns its path.
func writeJWKS(t *testing.T, keys ...jwkset.JWKMarshal) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(p, jwksJSON(t, keys...), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type testKeys struct {
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
	ed  ed25519.PrivateKey
}

func newTestKeys(t *testing.T) testKeys {
	t.Helper()
	var k testKeys
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k testKeys) jwks(t *testing.T) []jwkset.JWKMarshal {
	return []jwkset.JWKMarshal{
		jwkOf(t, &k.rsa.PublicKey, "rsa1", "RS256"),
		jwkOf(t, &k.ec.PublicKey, "ec1", "ES256"),
		jwkOf(t, k.ed.Public(), "ed1", "EdDSA"),
	}
}

func TestJWKSFile(t *testing.T) {
	k := newTestKeys(t)
	other := newTestKeys(t)
	a := newAuthorizer(t, Config{JWKS: writeJWKS(t, k.jwks(t)...)})
	c := claims("svc", []string{"jobs-*"}, nil, false)
	for _, tc := range []struct {
		name  string
		token string
		ok    bool
		msg   string
	}{
		{"RS256", sign(t, jwt.SigningMethodRS256, k.rsa, c, "rsa1"), true, ""},
		{"ES256", sign(t, jwt.SigningMethodES256, k.ec, c, "ec1"), true, ""},
		{"EdDSA", sign(t, jwt.SigningMethodEdDSA, k.ed, c, "ed1"), true, ""},
		{"RS256 without kid", sign(t, jwt.SigningMethodRS256, k.rsa, c, ""), true, ""},
		{"EdDSA without kid", sign(t, jwt.SigningMethodEdDSA, k.ed, c, ""), true, ""},
		{"RS256, another key", sign(t, jwt.SigningMethodRS256, other.rsa, c, "rsa1"), false, "signature is invalid"},
		{"ES256, another key, no kid", sign(t, jwt.SigningMethodES256, other.ec, c, ""), false, "signature is invalid"},
		{"unknown kid", sign(t, jwt.SigningMethodRS256, k.rsa, c, "nope"), false, "cannot be verified"},
		{"kid of another alg", sign(t, jwt.SigningMethodES256, k.ec, c, "rsa1"), false, "cannot be verified"},
		{"RS384", sign(t, jwt.SigningMethodRS384, k.rsa, c, "rsa1"), false, "accepted: RS256, ES256, EdDSA"},
		{"PS256", sign(t, jwt.SigningMethodPS256, k.rsa, c, "rsa1"), false, "algorithm is not accepted"},
		{"HS256 without a secret", sign(t, jwt.SigningMethodHS256, testSecret, c, ""), false, "algorithm is not accepted"},
		{"none", noneToken(t, c), false, "algorithm is not accepted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := a.Authorize(request("POST", "/channels/jobs-1/messages", tc.token), Publish, "jobs-1")
			if tc.ok {
				checkErr(t, err, nil, "")
			} else {
				checkErr(t, err, ErrInvalidToken, tc.msg)
			}
		})
	}
}

// TestSecretAndJWKS accepts both kinds of token at once.
func TestSecretAndJWKS(t *testing.T) {
	k := newTestKeys(t)
	a := newAuthorizer(t, Config{Secret: testSecret, JWKS: writeJWKS(t, k.jwks(t)...)})
	c := claims("svc", nil, []string{"*"}, false)
	for _, tok := range []string{sign(t, jwt.SigningMethodHS256, testSecret, c, ""), sign(t, jwt.SigningMethodES256, k.ec, c, "ec1")} {
		if _, err := a.Verify(context.Background(), tok); err != nil {
			t.Error(err)
		}
	}
}

func TestJWKSErrors(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer refusing.Close()
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"keys":[]}`))
	}))
	defer empty.Close()
	for _, tc := range []struct {
		jwks string
		msg  string
	}{
		{filepath.Join(dir, "missing.json"), "no such file"},
		{bad, "not a JWK Set"},
		{writeJWKS(t), "no usable key"},
		{writeJWKS(t, octJWK(t)), "no usable key"},
		{writeJWKS(t, jwkOf(t, &p384.PublicKey, "ec384", "")), "no usable key"},
		{refusing.URL + "/jwks?token=s3cr3t", "500"},
		{empty.URL, "no usable key"},
	} {
		_, err := New(context.Background(), Config{JWKS: tc.jwks})
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("New(JWKS %s) = %v, want an error saying %q", tc.jwks, err, tc.msg)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("the error shows the URL's token: %v", err)
		}
	}
}

// octJWK returns a symmetric (oct) JWK: it can never check an RS256,
// ES256 or EdDSA token.
func octJWK(t *testing.T) jwkset.JWKMarshal {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(testSecret, jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: "oct1", ALG: jwkset.AlgHS256},
		Marshal:  jwkset.JWKMarshalOptions{Private: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return j.Marshal()
}

// TestJWKSPrivateKeyFile: a JWK Set holding a private key by mistake
// still checks tokens with its public half.
func TestJWKSPrivateKeyFile(t *testing.T) {
	k := newTestKeys(t)
	j, err := jwkset.NewJWKFromKey(k.ec, jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: "ec1", ALG: jwkset.AlgES256},
		Marshal:  jwkset.JWKMarshalOptions{Private: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthorizer(t, Config{JWKS: writeJWKS(t, j.Marshal())})
	if _, err := a.Verify(context.Background(), sign(t, jwt.SigningMethodES256, k.ec, claims("s", nil, []string{"*"}, false), "ec1")); err != nil {
		t.Fatal(err)
	}
}

// jwksServer serves a JWK Set that the test can change; every response
// reports its generation on hits.
type jwksServer struct {
	*httptest.Server
	hits chan int

	mu   sync.Mutex
	gen  int    // guarded by mu
	body []byte // guarded by mu; nil: answer 503
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{hits: make(chan int, 100), body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		gen, body := s.gen, s.body
		s.mu.Unlock()
		if body == nil {
			http.Error(w, "down", http.StatusServiceUnavailable)
		} else {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		}
		select {
		case s.hits <- gen:
		default:
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// set serves body from now on and returns its generation.
func (s *jwksServer) set(body []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.body = body
	return s.gen
}

// waitServed waits until generation gen has been served n times. The
// refresh goroutine fetches one at a time, so once a second fetch of gen
// has begun the first one's keys are in place.
func (s *jwksServer) waitServed(t *testing.T, gen, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for n > 0 {
		select {
		case g := <-s.hits:
			if g == gen {
				n--
			}
		case <-deadline:
			t.Fatalf("the JWKS of generation %d was not fetched in time", gen)
		}
	}
}

// TestJWKSURLRotation: keys come from a URL; the issuer rotates from key 1
// to key 2; after the background refresh key 2 is accepted and key 1 no
// longer is. While the URL fails, the keys already known are kept.
func TestJWKSURLRotation(t *testing.T) {
	k1, k2 := newTestKeys(t), newTestKeys(t)
	srv := newJWKSServer(t, jwksJSON(t, jwkOf(t, &k1.rsa.PublicKey, "k1", "RS256")))
	var logs syncBuffer
	a := newAuthorizer(t, Config{
		JWKS: srv.URL + "/jwks?token=s3cr3t", JWKSRefresh: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	c := claims("svc", nil, []string{"*"}, false)
	tok1 := sign(t, jwt.SigningMethodRS256, k1.rsa, c, "k1")
	tok2 := sign(t, jwt.SigningMethodRS256, k2.rsa, c, "k2")
	verify := func(tok string) error { _, err := a.Verify(context.Background(), tok); return err }
	if err := verify(tok1); err != nil {
		t.Fatalf("key 1 before rotation: %v", err)
	}
	if err := verify(tok2); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("key 2 before rotation: %v, want ErrInvalidToken", err)
	}

	gen := srv.set(jwksJSON(t, jwkOf(t, &k2.rsa.PublicKey, "k2", "RS256")))
	srv.waitServed(t, gen, 2)
	if err := verify(tok2); err != nil {
		t.Fatalf("key 2 after rotation: %v", err)
	}
	if err := verify(tok1); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("key 1 after it was removed: %v, want ErrInvalidToken", err)
	}

	gen = srv.set(nil) // the issuer is down
	srv.waitServed(t, gen, 2)
	if err := verify(tok2); err != nil {
		t.Fatalf("key 2 while the JWKS URL fails: %v", err)
	}
	if !strings.Contains(logs.String(), "JWKS refresh failed") {
		t.Errorf("the failed refresh was not logged: %q", logs.String())
	}
	if strings.Contains(logs.String(), "s3cr3t") {
		t.Errorf("the log shows the URL's token: %q", logs.String())
	}

	// After Close no more fetches happen; the goroutine's exit is checked
	// by TestMain.
	a.Close()
}

// TestJWKSUnknownKID: a token signed with a key the server has not seen
// yet makes it fetch the set at once, without waiting for the refresh.
func TestJWKSUnknownKID(t *testing.T) {
	k1, k2 := newTestKeys(t), newTestKeys(t)
	srv := newJWKSServer(t, jwksJSON(t, jwkOf(t, k1.ed.Public(), "k1", "EdDSA")))
	a := newAuthorizer(t, Config{JWKS: srv.URL})
	srv.set(jwksJSON(t, jwkOf(t, k1.ed.Public(), "k1", "EdDSA"), jwkOf(t, k2.ed.Public(), "k2", "EdDSA")))
	c := claims("svc", nil, []string{"*"}, false)
	if _, err := a.Verify(context.Background(), sign(t, jwt.SigningMethodEdDSA, k2.ed, c, "k2")); err != nil {
		t.Fatalf("a new key id: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
