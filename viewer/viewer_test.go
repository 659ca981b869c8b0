package viewer_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/messages-server/messages/viewer"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(viewer.Handler())
	t.Cleanup(srv.Close)

	tests := []struct {
		method, path string
		status       int
		contentType  string
		contains     string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script type="module" src="static/app.js">`},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/static/app.js", 200, "text/javascript; charset=utf-8", "import"},
		{"GET", "/static/stream.js", 200, "text/javascript; charset=utf-8", "class Subscription"},
		{"GET", "/static/api.js", 200, "text/javascript; charset=utf-8", "export"},
		{"GET", "/static/style.css", 200, "text/css; charset=utf-8", "prefers-color-scheme: dark"},
		{"GET", "/static/icon.svg", 200, "image/svg+xml", "<svg"},
		{"GET", "/static/index.html", 200, "text/html; charset=utf-8", "<!doctype html>"},
		{"GET", "/static/", 404, "application/json", `"error"`},
		{"GET", "/static", 404, "application/json", `"error"`},
		{"GET", "/static/nope.js", 404, "application/json", `"error"`},
		{"GET", "/static/../viewer.go", 404, "application/json", `"error"`},
		{"GET", "/index.html", 404, "application/json", `"error"`},
		{"GET", "/favicon.ico", 404, "application/json", `"error"`},
		{"POST", "/", 405, "application/json", `"error"`},
		{"DELETE", "/static/app.js", 405, "application/json", `"error"`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (body %q)", res.StatusCode, tt.status, body)
			}
			if got := res.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", got, tt.contentType)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			if !strings.Contains(string(body), tt.contains) {
				t.Errorf("body does not contain %q:\n%.300s", tt.contains, body)
			}
			if tt.method == "HEAD" && len(body) != 0 {
				t.Errorf("HEAD answered a body of %d bytes", len(body))
			}
			switch {
			case tt.status == 200:
				if res.Header.Get("ETag") == "" {
					t.Error("no ETag")
				}
				if got := res.Header.Get("Cache-Control"); got != "no-cache" {
					t.Errorf("Cache-Control = %q, want no-cache", got)
				}
			case tt.status == 405:
				if got := res.Header.Get("Allow"); got != "GET, HEAD" {
					t.Errorf("Allow = %q", got)
				}
				fallthrough
			default:
				var e struct{ Error string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("error body %q is not {\"error\": ...}: %v", body, err)
				}
			}
		})
	}
}

func TestHandlerIndexSecurityHeaders(t *testing.T) {
	rec := httptest.NewRecorder()
	viewer.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	csp := rec.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
}

func TestHandlerConditionalGet(t *testing.T) {
	h := viewer.Handler()
	for _, path := range []string{"/", "/static/app.js"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		etag := rec.Header().Get("ETag")
		if rec.Code != 200 || etag == "" {
			t.Fatalf("GET %s: status %d, ETag %q", path, rec.Code, etag)
		}
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("If-None-Match", etag)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match: status %d, want 304", path, rec.Code)
		}
		if rec.Body.Len() != 0 {
			t.Errorf("304 with a body of %d bytes", rec.Body.Len())
		}
	}
}

// TestAssetsAreSelfContained checks that the page loads nothing from
// another origin, so the viewer works offline.
func TestAssetsAreSelfContained(t *testing.T) {
	h := viewer.Handler()
	for _, path := range []string{"/", "/static/app.js", "/static/api.js", "/static/stream.js",
		"/static/list.js", "/static/watch.js", "/static/style.css"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 {
			t.Fatalf("GET %s: status %d", path, rec.Code)
		}
		body := rec.Body.String()
		for _, bad := range []string{"http://", "https://", "//cdn", "innerHTML", "insertAdjacentHTML", "document.write"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q", path, bad)
			}
		}
	}
}
