package auth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHostList(t *testing.T) {
	loop, err := NewHostList(LoopbackHosts())
	if err != nil {
		t.Fatal(err)
	}
	named, err := NewHostList([]string{"Messages.Example.com.", "10.0.0.5", "::1", "[2001:db8::1]"})
	if err != nil {
		t.Fatal(err)
	}
	all, err := NewHostList([]string{"*"})
	if err != nil {
		t.Fatal(err)
	}
	none, err := NewHostList(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		list *HostList
		host string
		want bool
	}{
		{loop, "localhost", true},
		{loop, "localhost:3000", true},
		{loop, "LOCALHOST:80", true},
		{loop, "localhost.:3000", true},
		{loop, "127.0.0.1:3000", true},
		{loop, "127.0.0.1", true},
		{loop, "[::1]:3000", true},
		{loop, "[::1]", true},
		{loop, "[0:0:0:0:0:0:0:1]:3000", true},
		{loop, "::1", false},
		{loop, "evil.example:3000", false},
		{loop, "localhost.evil.example", false},
		{loop, "127.0.0.2:3000", false},
		{loop, "", false},
		{loop, "localhost:http", false},
		{loop, "[::1", false},
		{loop, "[::1]x", false},
		{named, "messages.example.com", true},
		{named, "MESSAGES.example.COM:443", true},
		{named, "10.0.0.5:3000", true},
		{named, "[::1]:1", true},
		{named, "[2001:DB8:0::1]:8080", true},
		{named, "example.com", false},
		{named, "sub.messages.example.com", false},
		{all, "anything:1", true},
		{all, "", true},
		{none, "localhost", false},
	} {
		if got := tc.list.Allowed(tc.host); got != tc.want {
			t.Errorf("%v.Allowed(%q) = %v, want %v", tc.list.Hosts(), tc.host, got, tc.want)
		}
	}
}

func TestHostListBadEntries(t *testing.T) {
	for _, e := range []string{"", "localhost:3000", "[::1]:3000", "http://example.com", "*.example.com", "a b", "[::1", "example.com/x"} {
		if _, err := NewHostList([]string{e}); err == nil {
			t.Errorf("NewHostList(%q) accepted a bad entry", e)
		}
	}
}

func TestHostListHandler(t *testing.T) {
	hl, err := NewHostList(LoopbackHosts())
	if err != nil {
		t.Fatal(err)
	}
	h := hl.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for host, want := range map[string]int{"localhost:3000": 204, "[::1]:3000": 204, "rebind.evil.example:3000": 421} {
		r := httptest.NewRequest("GET", "/channels", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %s: status %d, want %d", host, w.Code, want)
		}
		if want == 421 && (!strings.Contains(w.Body.String(), `"error":"this server does not answer for host \"rebind.evil.example:3000\"`) || w.Header().Get("Content-Type") != "application/json") {
			t.Errorf("Host %s: body %q, Content-Type %q", host, w.Body.String(), w.Header().Get("Content-Type"))
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:3000": true, "localhost:3000": true, "[::1]:3000": true, "127.1.2.3:80": true,
		":3000": false, "0.0.0.0:3000": false, "[::]:3000": false, "10.0.0.1:3000": false, "example.com:3000": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
