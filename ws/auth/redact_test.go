package auth

import (
	"net/url"
	"testing"
)

func TestRedactQuery(t *testing.T) {
	for in, want := range map[string]string{
		"":                          "",
		"id=c1&from=3":              "id=c1&from=3",
		"id=c1&token=abc.def.ghi":   "id=c1&token=REDACTED",
		"token=abc&id=c1":           "token=REDACTED&id=c1",
		"token=a&token=b":           "token=REDACTED&token=REDACTED",
		"access_token=abc":          "access_token=REDACTED",
		"%74oken=abc":               "%74oken=REDACTED",
		"Token=abc":                 "Token=REDACTED",
		"token":                     "token=REDACTED",
		"tokens=abc&mytoken=x":      "tokens=abc&mytoken=x",
		"id=token&x=token%3Dabc":    "id=token&x=token%3Dabc",
		"id=c1&token=abc%ZZ&from=1": "id=c1&token=REDACTED&from=1",
		"id=c1;token=abc":           "id=c1;token=abc", // one parameter for Go: not a token
		"id=c1&&token=abc&":         "id=c1&&token=REDACTED&",
		"id=%E2%9C%93&token=abc":    "id=%E2%9C%93&token=REDACTED",
	} {
		if got := RedactQuery(in); got != want {
			t.Errorf("RedactQuery(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"/ws?id=c1&token=abc":                          "/ws?id=c1&token=REDACTED",
		"/channels/c1":                                 "/channels/c1",
		"https://idp.example/jwks?token=abc":           "https://idp.example/jwks?token=REDACTED",
		"https://user:pass@idp.example/jwks":           "https://user:REDACTED@idp.example/jwks",
		"https://user@idp.example/jwks":                "https://user@idp.example/jwks",
		"http://[::1]:3000/?id=c&access_token=a.b.c":   "http://[::1]:3000/?id=c&access_token=REDACTED",
		"http://example.com/%zz?token=not-a-valid-url": "http://example.com/%zz?REDACTED",
	} {
		if got := RedactURLString(in); got != want {
			t.Errorf("RedactURLString(%q) = %q, want %q", in, got, want)
		}
	}
	u, _ := url.Parse("/ws?token=abc")
	if got := RedactURL(u); got != "/ws?token=REDACTED" || u.RawQuery != "token=abc" {
		t.Errorf("RedactURL = %q and left the URL %q", got, u.RawQuery)
	}
	if RedactURL(nil) != "" {
		t.Error("RedactURL(nil) is not empty")
	}
}

// FuzzRedactQuery checks that whatever the query, Go's own parsing of the
// redacted query finds no token value but REDACTED.
func FuzzRedactQuery(f *testing.F) {
	for _, s := range []string{"id=c&token=abc", "token=a&token=b", "%74oken=x", "a=1&&token", "t%6Fken=%ZZ", "token=a=b", "x=token&token=%26"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		red := RedactQuery(q)
		vals, _ := url.ParseQuery(red)
		for k, vs := range vals {
			if k != "token" && k != "access_token" {
				continue
			}
			for _, v := range vs {
				if v != Redacted {
					t.Fatalf("RedactQuery(%q) = %q: %s=%q survives", q, red, k, v)
				}
			}
		}
	})
}
