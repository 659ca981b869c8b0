package main

import (
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
