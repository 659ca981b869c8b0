package auth

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// browser returns a request as a browser on origin would send it; site is
// its Sec-Fetch-Site ("" for a browser that does not send it).
func browser(method, target, origin, site, contentType string) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader("c1"))
	r.Host = "messages.example.com:3000"
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	if site != "" {
		r.Header.Set("Sec-Fetch-Site", site)
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

func TestCrossOrigin(t *testing.T) {
	const self = "http://messages.example.com:3000"
	for _, tc := range []struct {
		name    string
		allowed []string
		r       *http.Request
		ok      bool
	}{
		{"no-preflight text/plain POST from another site", nil, browser("POST", "/channels/c/close", "https://evil.example", "cross-site", "text/plain"), false},
		{"form POST, no Sec-Fetch-Site, Origin mismatch", nil, browser("POST", "/", "https://evil.example", "", "application/x-www-form-urlencoded"), false},
		{"DELETE from another site", nil, browser("DELETE", "/channels/c", "https://evil.example", "cross-site", ""), false},
		{"POST from a sibling subdomain", nil, browser("POST", "/channels", "http://other.example.com:3000", "same-site", "text/plain"), false},
		{"POST from an opaque origin", nil, browser("POST", "/channels", "null", "cross-site", "text/plain"), false},
		{"Sec-Fetch-Site cross-site without Origin", nil, browser("POST", "/channels", "", "cross-site", "text/plain"), false},
		{"same origin by Sec-Fetch-Site", nil, browser("POST", "/channels", self, "same-origin", "application/json"), true},
		{"same origin by Origin", nil, browser("POST", "/channels", self, "", "application/json"), true},
		{"typed URL (Sec-Fetch-Site none)", nil, browser("POST", "/channels", "", "none", ""), true},
		{"curl: no browser headers", nil, browser("POST", "/channels", "", "", "text/plain"), true},
		{"cross-site GET is safe", nil, browser("GET", "/channels", "https://evil.example", "cross-site", ""), true},
		{"cross-site OPTIONS is safe", nil, browser("OPTIONS", "/channels", "https://evil.example", "cross-site", ""), true},
		{"allowed host pattern", []string{"app.example.org"}, browser("POST", "/channels", "https://app.example.org", "cross-site", "text/plain"), true},
		{"allowed host pattern, other port", []string{"app.example.org"}, browser("POST", "/channels", "https://app.example.org:8443", "cross-site", "text/plain"), false},
		{"allowed wildcard", []string{"*.example.org"}, browser("POST", "/channels", "https://a.example.org", "cross-site", "text/plain"), true},
		{"allowed wildcard, case", []string{"*.Example.org"}, browser("POST", "/channels", "https://A.EXAMPLE.org", "cross-site", "text/plain"), true},
		{"allowed wildcard, other domain", []string{"*.example.org"}, browser("POST", "/channels", "https://example.org.evil.example", "cross-site", "text/plain"), false},
		{"allowed with scheme", []string{"https://app.example.org"}, browser("POST", "/channels", "https://app.example.org", "cross-site", "text/plain"), true},
		{"allowed with scheme, wrong scheme", []string{"https://app.example.org"}, browser("POST", "/channels", "http://app.example.org", "cross-site", "text/plain"), false},
		{"star trusts everyone", []string{"*"}, browser("POST", "/channels", "https://evil.example", "cross-site", "text/plain"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCrossOrigin(tc.allowed)
			if err != nil {
				t.Fatal(err)
			}
			served := false
			h := c.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served = true }))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tc.r)
			if tc.ok {
				if !served || w.Code != http.StatusOK {
					t.Fatalf("refused: %d %s", w.Code, w.Body.String())
				}
				return
			}
			if served || w.Code != http.StatusForbidden {
				t.Fatalf("status %d, served %v; want 403, not served", w.Code, served)
			}
			var body struct{ Error string }
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || !strings.HasPrefix(body.Error, "cross-origin request refused: ") {
				t.Errorf("body %q (%v)", w.Body.String(), err)
			}
		})
	}
}

func TestCrossOriginBadPattern(t *testing.T) {
	if _, err := NewCrossOrigin([]string{"[a-"}); err == nil {
		t.Error("NewCrossOrigin accepted a bad pattern")
	}
	if _, err := NewGuard(GuardConfig{AllowedOrigins: []string{"[a-"}}); err == nil {
		t.Error("NewGuard accepted a bad origin pattern")
	}
	if _, err := NewGuard(GuardConfig{AllowedHosts: []string{"localhost:3000"}}); err == nil {
		t.Error("NewGuard accepted a host with a port")
	}
}

// TestGuard runs the whole middleware behind a real listener, as a
// server would: a rebinding Host gets 421 before anything else, a
// cross-site POST 403, and the rest passes. Refusals are logged at debug
// level only: a flood of them must not fill the log.
func TestGuard(t *testing.T) {
	var logs, info syncBuffer
	g, err := NewGuard(GuardConfig{
		AllowedHosts: LoopbackHosts(), AllowedOrigins: []string{"app.example.org"},
		Logger: slog.New(slog.NewMultiHandler(
			slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}),
			slog.NewTextHandler(&info, nil))),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
	defer srv.Close()
	self := srv.URL // http://127.0.0.1:port
	for _, tc := range []struct {
		name, method, host, origin, site string
		want                             int
	}{
		{"same origin POST", "POST", "", self, "same-origin", 204},
		{"localhost name", "POST", "localhost" + srv.URL[strings.LastIndexByte(srv.URL, ':'):], "", "", 204},
		{"rebinding Host", "GET", "rebind.evil.example", "", "", 421},
		{"rebinding Host, same-origin POST", "POST", "rebind.evil.example:80", "http://rebind.evil.example:80", "same-origin", 421},
		{"cross-site POST", "POST", "", "https://evil.example", "cross-site", 403},
		{"allowed origin POST", "POST", "", "https://app.example.org", "cross-site", 204},
		{"cross-site GET", "GET", "", "https://evil.example", "cross-site", 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+"/channels/c/close?token=s3cr3t", strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			req.Header.Set("Content-Type", "text/plain")
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.site != "" {
				req.Header.Set("Sec-Fetch-Site", tc.site)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	if !strings.Contains(logs.String(), "request refused") || strings.Contains(logs.String(), "s3cr3t") {
		t.Errorf("refusals not logged, or logged with the token: %q", logs.String())
	}
	if info.String() != "" {
		t.Errorf("refusals logged above debug level: %q", info.String())
	}
}

func TestGuardZeroConfig(t *testing.T) {
	g, err := NewGuard(GuardConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h := g.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for _, tc := range []struct {
		r    *http.Request
		want int
	}{
		{browser("POST", "/channels", "", "", ""), 204},
		{browser("POST", "/channels", "https://evil.example", "cross-site", "text/plain"), 403},
	} {
		tc.r.Host = "anything.example"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, tc.r)
		if w.Code != tc.want {
			t.Errorf("status %d, want %d", w.Code, tc.want)
		}
	}
}
