package ws_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/auth"
)

// forkSpellings are Stream-Forked-From values that name the stream
// "secretstream" (or try to reach it), each with the status a token that
// may only publish and subscribe "a.*" must get: 403 where the value names
// secretstream, 400 where it names no stream at all.
var forkSpellings = []struct {
	from string
	want int
}{
	{"/v1/stream/secretstream", http.StatusForbidden},
	{"secretstream", http.StatusForbidden},
	{"a.x://h/v1/stream/secretstream", http.StatusForbidden},
	{"a.x:/v1/stream/secretstream", http.StatusForbidden},
	{"http://a.example/v1/stream/secretstream", http.StatusForbidden},
	{"//a.x/v1/stream/secretstream", http.StatusForbidden},
	{"/v1/stream/%73ecretstream", http.StatusForbidden},
	{"/v1/stream/a.x/../secretstream", http.StatusForbidden},
	{"a.x://h/v1/stream/a.y/./../%73ecretstream", http.StatusForbidden},
	{"/v1/stream//secretstream", http.StatusForbidden},
	{"/v1//stream/secretstream", http.StatusForbidden},
	{"/v1/stream/a.x%2F..%2Fsecretstream", http.StatusBadRequest},
	{"/v1/stream/a.x/../../stream/secretstream", http.StatusForbidden},
	{"/v1/stream/a.x/../../secretstream", http.StatusBadRequest},
	{"a.b/../../v1/stream/secretstream", http.StatusBadRequest},
	{"a.x:%2Fv1%2Fstream%2Fsecretstream", http.StatusBadRequest},
	{"/v1/stream/secretstream?a.x", http.StatusBadRequest},
	{"a.%2F../secretstream", http.StatusBadRequest},
}

// TestDurableForkRightsEverySpelling: the rights on a fork's source are
// checked on the very name the fork reads, however Stream-Forked-From
// spells it (absolute URL with any scheme, path, percent-encoding, dot
// segments, repeated slashes): a token that may read only "a.*" cannot
// fork "secretstream" into a stream of its own, and nothing is created.
// Spellings of a stream it may read fork it. A request's own stream name is
// checked decoded, as the store keeps it.
func TestDurableForkRightsEverySpelling(t *testing.T) {
	srv := startAuth(t, "sqlite", false, nil)
	admin := testTokens(t)["admin"]
	tok := mint(t, testSecret, auth.Claims{Publish: []string{"a.*"}, Subscribe: []string{"a.*"}}, time.Hour)
	ct := map[string]string{"Content-Type": "text/plain"}
	for name, body := range map[string]string{"secretstream": "top secret", "a.src": "shared"} {
		if got := request(t, "PUT", srv.URL+"/v1/stream/"+name, admin, body, ct); got.status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", name, got.status, got.body)
		}
	}
	for i, c := range forkSpellings {
		fork := srv.URL + "/v1/stream/a.fork" + strconv.Itoa(i)
		got := request(t, "PUT", fork, tok, "", map[string]string{"Stream-Forked-From": c.from})
		if got.status != c.want {
			t.Errorf("fork from %q: %d %s, want %d", c.from, got.status, got.body, c.want)
		}
		if got := request(t, "GET", fork+"?offset=-1", admin, "", nil); got.status != http.StatusNotFound {
			t.Errorf("fork from %q: the fork exists (%d %q)", c.from, got.status, got.body)
		}
	}
	for i, from := range []string{
		"/v1/stream/a.src", "a.src", "a.x://h/v1/stream/a.src", "/v1/stream/%61.src",
		"/v1/stream/secretstream/../a.src", "http://h/v1/stream//a.src",
	} {
		fork := srv.URL + "/v1/stream/a.ok" + strconv.Itoa(i)
		if got := request(t, "PUT", fork, tok, "", map[string]string{"Stream-Forked-From": from}); got.status != http.StatusCreated {
			t.Errorf("fork from %q: %d %s, want 201", from, got.status, got.body)
			continue
		}
		if got := request(t, "GET", fork+"?offset=-1", tok, "", nil); got.status != http.StatusOK || got.body != "shared" {
			t.Errorf("fork from %q reads %d %q, want a.src's content", from, got.status, got.body)
		}
	}
	// The request's own name: decoded once, then checked and used.
	for _, c := range []struct {
		path string
		want int
	}{
		{"/v1/stream/%73ecretstream?offset=-1", http.StatusForbidden},
		{"/v1/stream/%61.src?offset=-1", http.StatusOK},
		{"/v1/stream/a.x%2F..%2Fsecretstream?offset=-1", http.StatusBadRequest},
	} {
		if got := request(t, "GET", srv.URL+c.path, tok, "", nil); got.status != c.want {
			t.Errorf("GET %s: %d %s, want %d", c.path, got.status, got.body, c.want)
		}
	}
}
