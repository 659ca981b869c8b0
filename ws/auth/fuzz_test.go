package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// hs256 signs payload, any bytes, as the claims of an HS256 token.
func hs256(secret, payload []byte) string {
	enc := base64.RawURLEncoding
	unsigned := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(unsigned))
	return unsigned + "." + enc.EncodeToString(m.Sum(nil))
}

// FuzzClaims: whatever a correctly signed token's claims hold, a token the
// Authorizer accepts has an expiry given as a JSON number, time claims in
// range and valid channel patterns.
func FuzzClaims(f *testing.F) {
	for _, s := range []string{
		`{"exp":99999999999,"admin":true}`, `{"exp":"99999999999"}`, `{"exp":1e10,"EXP":"1"}`,
		`{"exp":4102444800,"nbf":"0","subscribe":["a*"]}`, `{"exp":4102444800,"publish":["*a"]}`,
		`{"exp":null}`, `{"exp":4102444800,"iat":-1}`, `[]`, `{"exp":4102444800,"aud":["x"],"sub":"\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	a, err := New(context.Background(), Config{Secret: testSecret})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, err := a.Verify(context.Background(), hs256(testSecret, payload))
		if err != nil {
			if !strings.Contains(err.Error(), "token") {
				t.Fatalf("refusal %q does not say what about the token", err)
			}
			return
		}
		if c.ExpiresAt == nil || c.Validate() != nil {
			t.Fatalf("%s accepted as %+v", payload, c)
		}
		var raw map[string]json.RawMessage
		if json.Unmarshal(payload, &raw) != nil {
			t.Fatalf("%s accepted but is no JSON object", payload)
		}
		for k, v := range raw {
			if k := strings.ToLower(k); k == "exp" || k == "nbf" || k == "iat" {
				if v = bytes.TrimSpace(v); len(v) == 0 || !(v[0] == '-' || '0' <= v[0] && v[0] <= '9') {
					t.Fatalf("%s accepted with %s %s", payload, k, v)
				}
			}
		}
	})
}

// FuzzBearer: any Authorization header and query give a token or a
// refusal, never a panic, and a token from the query only where allowed.
func FuzzBearer(f *testing.F) {
	f.Add("Bearer x", "token=y", true)
	f.Add("bearer  ", "token=&token=", false)
	f.Add("", "x=1;token=y", true)
	f.Fuzz(func(t *testing.T, header, query string, allowQuery bool) {
		r := request("GET", "/ws", "")
		r.URL.RawQuery = query
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		tok, err := bearer(r, allowQuery)
		if err == nil && tok == "" {
			t.Fatalf("header %q, query %q: an empty token accepted", header, query)
		}
		if err == nil && !allowQuery && r.URL.Query().Has("token") {
			t.Fatalf("query %q: a query token accepted where it is not allowed", query)
		}
	})
}
