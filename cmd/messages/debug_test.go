package main

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestDebugHidesCmdline starts the server with -debug-addr and the JWT
// secret as a flag: the profiles are served, but not the command line,
// which would show the secret to anyone who can reach the debug address.
func TestDebugHidesCmdline(t *testing.T) {
	s := start(t, "-database-url", sqliteArg(t), "-jwt-secret", testSecret, "-debug-addr", "127.0.0.1:0")
	m := regexp.MustCompile(`http://127\.0\.0\.1:\d+/debug/pprof/`).FindString(s.log.String())
	if m == "" {
		t.Fatalf("the debug address is not logged:\n%s", s.log)
	}
	for _, p := range []string{"", "goroutine?debug=1", "heap", "allocs", "threadcreate", "block", "mutex", "symbol"} {
		if b := do(t, "GET", m+p, "", 200); strings.Contains(string(b), testSecret) {
			t.Errorf("GET /debug/pprof/%s shows the secret", p)
		}
	}
	if b := do(t, "GET", m+"cmdline", "", 404); strings.Contains(string(b), testSecret) {
		t.Errorf("GET /debug/pprof/cmdline shows the secret")
	}
}

// TestMetricsAddr: with -metrics-addr, /metrics is served there without a
// token, and no longer on the API's address; without it, the API's
// /metrics needs an admin token when tokens are required.
func TestMetricsAddr(t *testing.T) {
	s := start(t, "-database-url", sqliteArg(t), "-jwt-secret", testSecret, "-metrics-addr", "127.0.0.1:0")
	m := regexp.MustCompile(`http://127\.0\.0\.1:\d+/metrics`).FindString(s.log.String())
	if m == "" {
		t.Fatalf("the metrics address is not logged:\n%s", s.log)
	}
	if b := do(t, "GET", m, "", 200); !strings.Contains(string(b), "messages_channels_open") {
		t.Errorf("GET %s: no messages_ series in %.200s", m, b)
	}
	do(t, "GET", s.base+"/metrics", "", 404)
	// No token guards it: a web page reaching it through a name of its own
	// (DNS rebinding) is refused; localhost and addresses pass.
	for host, want := range map[string]int{"evil.example": 421, "localhost": 200, "127.0.0.1": 200} {
		req, err := http.NewRequest("GET", m, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s with Host %s: %d, want %d", m, host, resp.StatusCode, want)
		}
	}

	s2 := start(t, "-database-url", sqliteArg(t), "-jwt-secret", testSecret)
	do(t, "GET", s2.base+"/metrics", "", 401)
}
