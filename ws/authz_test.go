package ws_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/wstest"
)

const testSecret = "a test secret that is at least 32 bytes long"

// mint signs a token with secret for claims c, valid for ttl (negative:
// expired that long ago, past the leeway).
func mint(t testing.TB, secret string, c auth.Claims, ttl time.Duration) string {
	t.Helper()
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(ttl))
	tok, err := auth.SignHS256([]byte(secret), &c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokens are the tokens of the authorization tests, by name.
func testTokens(t testing.TB) map[string]string {
	return map[string]string{
		"none":       "",
		"malformed":  "not-a-jwt",
		"expired":    mint(t, testSecret, auth.Claims{Admin: true}, -time.Hour),
		"other key":  mint(t, "another secret, also at least 32 bytes", auth.Claims{Admin: true}, time.Hour),
		"subscriber": mint(t, testSecret, auth.Claims{Subscribe: []string{"room-*"}}, time.Hour),
		"publisher":  mint(t, testSecret, auth.Claims{Publish: []string{"room-*"}}, time.Hour),
		"stranger":   mint(t, testSecret, auth.Claims{Publish: []string{"other-*"}, Subscribe: []string{"other"}}, time.Hour),
		"publish *":  mint(t, testSecret, auth.Claims{Publish: []string{"*"}}, time.Hour),
		"admin":      mint(t, testSecret, auth.Claims{Admin: true}, time.Hour),
	}
}

// startAuth starts a server that checks tokens signed with testSecret.
func startAuth(t testing.TB, backend string, public bool, log *slog.Logger) *wstest.Server {
	t.Helper()
	a, err := auth.New(context.Background(), auth.Config{Secret: []byte(testSecret), PublicSubscribe: public, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	g, err := auth.NewGuard(auth.GuardConfig{AllowedHosts: auth.LoopbackHosts(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return wstest.Start(t, wstest.Options{Backend: backend, Auth: a, Guard: g, Logger: log, PersistInterval: 10 * time.Millisecond})
}

// reply is what a request got.
type reply struct {
	status    int
	challenge string // WWW-Authenticate
	body      string
}

// request sends method u with the token in the Authorization header
// (unless empty) and reads the whole answer.
func request(t testing.TB, method, u, token, body string, hdr map[string]string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading: %v", method, u, err)
	}
	return reply{resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(b)}
}

// dialWS opens GET /ws?id=id (plus query) with the token in the header
// (unless empty). It returns the handshake's status (101 on success) and
// challenge, and on success reads the stream to its end and returns the
// data.
func dialWS(t testing.TB, base, query, token string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	if token != "" {
		opts.HTTPHeader.Set("Authorization", "Bearer "+token)
	}
	c, resp, err := websocket.Dial(ctx, strings.Replace(base, "http://", "ws://", 1)+"/ws?"+query, opts)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial /ws?%s: %v", query, err)
		}
		return reply{status: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate"), body: err.Error()}
	}
	defer c.CloseNow()
	s := &rawSub{t: t, conn: c, live: -1, end: -1}
	if err := s.readToEnd(ctx); err != nil {
		t.Fatalf("/ws?%s: %v", query, err)
	}
	return reply{status: http.StatusSwitchingProtocols, body: strings.Join(s.data, "")}
}

// endpoint is one protected endpoint: call makes one request with token
// and reports what it got; ok is the status of an allowed request.
type endpoint struct {
	name  string
	right string // "subscribe", "publish", "publish *" (the server names the channel) or "admin"
	ok    int
	call  func(t *testing.T, token string) reply
}

// protectedEndpoints returns every endpoint that needs a token, against
// srv, where the channel room-closed holds "hello\n" and is closed and
// room-open is open. Each call that creates or closes a channel uses a new
// id, made with the admin token.
func protectedEndpoints(srv *wstest.Server, admin string) []endpoint {
	var n atomic.Int64
	fresh := func(t *testing.T) string {
		id := fmt.Sprintf("room-%d", n.Add(1))
		if r := request(t, "POST", srv.URL+"/channels", admin, fmt.Sprintf(`{"id":%q}`, id), nil); r.status != http.StatusCreated {
			t.Fatalf("create %s: %+v", id, r)
		}
		return id
	}
	get := func(path string) func(*testing.T, string) reply {
		return func(t *testing.T, tok string) reply { return request(t, "GET", srv.URL+path, tok, "", nil) }
	}
	return []endpoint{
		{"GET /ws", "subscribe", http.StatusSwitchingProtocols, func(t *testing.T, tok string) reply {
			return dialWS(t, srv.URL, "id=room-closed", tok)
		}},
		{"GET /?id=", "subscribe", http.StatusOK, get("/?id=room-closed")},
		{"GET /channels/{id}", "subscribe", http.StatusOK, get("/channels/room-closed")},
		{"GET /channels/{id}/messages", "subscribe", http.StatusOK, get("/channels/room-closed/messages")},
		{"POST /channels/{id}/messages", "publish", http.StatusOK, func(t *testing.T, tok string) reply {
			return request(t, "POST", srv.URL+"/channels/room-open/messages", tok, "more", nil)
		}},
		{"POST /channels/{id}/close", "publish", http.StatusOK, func(t *testing.T, tok string) reply {
			return request(t, "POST", srv.URL+"/channels/"+fresh(t)+"/close", tok, "", nil)
		}},
		{"POST /channels with id", "publish", http.StatusCreated, func(t *testing.T, tok string) reply {
			return request(t, "POST", srv.URL+"/channels", tok, fmt.Sprintf(`{"id":"room-new-%d"}`, n.Add(1)), nil)
		}},
		{"POST /channels without id", "publish *", http.StatusCreated, func(t *testing.T, tok string) reply {
			return request(t, "POST", srv.URL+"/channels", tok, `{}`, nil)
		}},
		{"POST / with id", "publish", http.StatusOK, func(t *testing.T, tok string) reply {
			return request(t, "POST", srv.URL+"/?freq=1000&max=3", tok, fmt.Sprintf("room-ref-%d", n.Add(1)), nil)
		}},
		{"POST / without id", "publish *", http.StatusOK, func(t *testing.T, tok string) reply {
			return request(t, "POST", srv.URL+"/?freq=1000&max=3", tok, "", nil)
		}},
		{"GET /channels", "admin", http.StatusOK, get("/channels")},
		{"GET /metrics", "admin", http.StatusOK, get("/metrics")},
		{"GET /stats", "admin", http.StatusOK, get("/stats")},
		{"DELETE /channels/{id}", "admin", http.StatusNoContent, func(t *testing.T, tok string) reply {
			return request(t, "DELETE", srv.URL+"/channels/"+fresh(t), tok, "", nil)
		}},
	}
}

// allowedFor is the status a token gets on an endpoint needing right.
func allowedFor(token, right string, ok int) (status int, why string) {
	switch token {
	case "none", "malformed", "expired", "other key":
		return http.StatusUnauthorized, "no valid token"
	case "admin":
		return ok, "admin may do everything"
	case "subscriber":
		if right == "subscribe" {
			return ok, "subscribe room-*"
		}
	case "publisher":
		if right == "publish" {
			return ok, "publish room-*"
		}
	case "publish *":
		if right == "publish" || right == "publish *" {
			return ok, "publish *"
		}
	}
	return http.StatusForbidden, "a valid token without the right"
}

// setUpRooms makes room-closed ("hello\n", closed) and room-open.
func setUpRooms(t *testing.T, srv *wstest.Server, admin string) {
	t.Helper()
	for _, step := range []struct{ path, body string }{
		{"/channels", `{"id":"room-closed"}`},
		{"/channels/room-closed/messages", "hello\n"},
		{"/channels/room-closed/close", ""},
		{"/channels", `{"id":"room-open"}`},
	} {
		if r := request(t, "POST", srv.URL+step.path, admin, step.body, nil); r.status/100 != 2 {
			t.Fatalf("POST %s: %+v", step.path, r)
		}
	}
}

// TestAuthEndpoints calls every protected endpoint with every kind of
// token, on both storage backends: no token, a malformed, an expired and a
// wrongly signed one get 401 with a Bearer challenge; a valid token
// without the right gets 403; the right token is served.
func TestAuthEndpoints(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			srv := startAuth(t, backend, false, nil)
			toks := testTokens(t)
			setUpRooms(t, srv, toks["admin"])
			for _, ep := range protectedEndpoints(srv, toks["admin"]) {
				for _, name := range []string{"none", "malformed", "expired", "other key", "subscriber", "publisher", "stranger", "publish *", "admin"} {
					want, why := allowedFor(name, ep.right, ep.ok)
					got := ep.call(t, toks[name])
					if got.status != want {
						t.Errorf("%s with %s (%s): %d %s, want %d", ep.name, name, why, got.status, got.body, want)
						continue
					}
					checkChallenge(t, ep.name+" with "+name, got)
					if ep.name == "GET /ws" || ep.name == "GET /?id=" {
						if want == ep.ok && got.body != "hello\n" {
							t.Errorf("%s with %s: got %q, want %q", ep.name, name, got.body, "hello\n")
						}
					}
				}
			}
		})
	}
}

// checkChallenge checks the WWW-Authenticate challenge of a refusal.
func checkChallenge(t *testing.T, what string, got reply) {
	t.Helper()
	switch got.status {
	case http.StatusUnauthorized:
		if !strings.HasPrefix(got.challenge, `Bearer realm="messages"`) {
			t.Errorf("%s: 401 with WWW-Authenticate %q, want a Bearer challenge", what, got.challenge)
		}
	case http.StatusForbidden:
		if !strings.Contains(got.challenge, `error="insufficient_scope"`) {
			t.Errorf("%s: 403 with WWW-Authenticate %q, want error=\"insufficient_scope\"", what, got.challenge)
		}
	}
}

// TestAuthQueryToken checks ?token= on GET /ws and GET /?id=, where
// browsers cannot set a header, and that it is refused elsewhere.
func TestAuthQueryToken(t *testing.T) {
	srv := startAuth(t, "sqlite", false, nil)
	toks := testTokens(t)
	setUpRooms(t, srv, toks["admin"])
	sub := toks["subscriber"]

	if got := dialWS(t, srv.URL, "id=room-closed&token="+sub, ""); got.status != http.StatusSwitchingProtocols || got.body != "hello\n" {
		t.Errorf("GET /ws?token=<subscriber>: %+v, want 101 and hello", got)
	}
	if got := request(t, "GET", srv.URL+"/?id=room-closed&token="+sub, "", "", nil); got.status != http.StatusOK || got.body != "hello\n" {
		t.Errorf("GET /?id=&token=<subscriber>: %+v, want 200 and hello", got)
	}
	for _, name := range []string{"expired", "other key", "malformed"} {
		if got := dialWS(t, srv.URL, "id=room-closed&token="+toks[name], ""); got.status != http.StatusUnauthorized ||
			!strings.Contains(got.challenge, `error="invalid_token"`) {
			t.Errorf("GET /ws?token=<%s>: %d %q, want 401 invalid_token", name, got.status, got.challenge)
		}
		if got := request(t, "GET", srv.URL+"/?id=room-closed&token="+toks[name], "", "", nil); got.status != http.StatusUnauthorized {
			t.Errorf("GET /?id=&token=<%s>: %+v, want 401", name, got)
		}
	}
	if got := dialWS(t, srv.URL, "id=room-closed&token="+toks["publisher"], ""); got.status != http.StatusForbidden {
		t.Errorf("GET /ws?token=<publisher>: %+v, want 403", got)
	}
	// Only where a header cannot be sent.
	for _, c := range []struct{ method, path string }{
		{"GET", "/channels/room-closed/messages"},
		{"GET", "/channels/room-closed"},
		{"POST", "/channels/room-open/messages"},
		{"GET", "/channels"},
	} {
		got := request(t, c.method, srv.URL+c.path+"?token="+toks["admin"], "", "x", nil)
		if got.status != http.StatusUnauthorized || !strings.Contains(got.body, "does not take a token in the query") {
			t.Errorf("%s %s?token=<admin>: %+v, want 401 saying to use the header", c.method, c.path, got)
		}
	}
	if got := request(t, "GET", srv.URL+"/?id=room-closed&token="+sub, sub, "", nil); got.status != http.StatusBadRequest {
		t.Errorf("the token in the header and the query: %+v, want 400", got)
	}
}

// TestAuthPublicSubscribe checks that with PublicSubscribe reading needs no
// token and writing still does.
func TestAuthPublicSubscribe(t *testing.T) {
	srv := startAuth(t, "postgres", true, nil)
	toks := testTokens(t)
	setUpRooms(t, srv, toks["admin"])
	for _, ep := range protectedEndpoints(srv, toks["admin"]) {
		got := ep.call(t, "")
		want := http.StatusUnauthorized
		if ep.right == "subscribe" {
			want = ep.ok
		}
		if got.status != want {
			t.Errorf("public subscribe: %s without a token: %d %s, want %d", ep.name, got.status, got.body, want)
		}
	}
	if got := dialWS(t, srv.URL, "id=room-closed", ""); got.body != "hello\n" {
		t.Errorf("public subscribe: GET /ws without a token got %q, want hello", got.body)
	}
	// A token sent anyway is not looked at.
	if got := dialWS(t, srv.URL, "id=room-closed&token="+toks["expired"], ""); got.status != http.StatusSwitchingProtocols {
		t.Errorf("public subscribe: GET /ws with an expired token: %+v, want 101", got)
	}
}

// lockedBuffer collects log output written concurrently.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAuthTokenNotLogged logs everything at debug level while tokens travel
// in the query of accepted and refused requests: no log line holds one.
func TestAuthTokenNotLogged(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := startAuth(t, "sqlite", false, log)
	toks := testTokens(t)
	setUpRooms(t, srv, toks["admin"])
	sub, expired := toks["subscriber"], toks["expired"]

	dialWS(t, srv.URL, "id=room-closed&token="+sub, "")
	request(t, "GET", srv.URL+"/?id=room-closed&token="+sub, "", "", nil)
	dialWS(t, srv.URL, "id=room-closed&token="+expired, "")
	request(t, "GET", srv.URL+"/?id=room-closed&token="+expired, "", "", nil)
	request(t, "GET", srv.URL+"/?id=nowhere&token="+sub, "", "", nil)
	// Refused by the Host check, which logs the request; the token in
	// spellings a query parser does not take as "token".
	for _, q := range []string{"token=" + sub, "x=1;token=" + sub, "x=1&token%zz=" + sub, "x=1&TOKEN=" + sub, "t=" + sub} {
		request(t, "GET", srv.URL+"/?id=room-closed&"+q, "", "", map[string]string{"Host": "rebound.example"})
		request(t, "GET", srv.URL+"/ws?"+q, "", "", map[string]string{"Host": "rebound.example"})
	}
	// Refused as cross-site.
	request(t, "POST", srv.URL+"/channels?x=1;token="+sub, sub, "{}", map[string]string{"Sec-Fetch-Site": "cross-site"})

	out := logs.String()
	if !strings.Contains(out, "token refused") || !strings.Contains(out, "request refused") {
		t.Fatalf("the requests were not logged (the test misses its point):\n%s", out)
	}
	for name, tok := range map[string]string{"subscriber": sub, "expired": expired} {
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		if strings.Contains(out, sig) {
			t.Errorf("the %s token appears in the logs:\n%s", name, out)
		}
	}
}

// TestGuardCrossSiteAndRebinding checks the Guard in front of the server: a
// cross-site text/plain POST (which a browser sends without a preflight) is
// refused with 403 even with a token, and changes nothing; a request with
// another Host (DNS rebinding) gets 421.
func TestGuardCrossSiteAndRebinding(t *testing.T) {
	srv := startAuth(t, "sqlite", false, nil)
	toks := testTokens(t)
	setUpRooms(t, srv, toks["admin"])
	for _, hdr := range []map[string]string{
		{"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
		{"Content-Type": "text/plain", "Origin": "https://evil.example"}, // a browser without Sec-Fetch-Site
	} {
		got := request(t, "POST", srv.URL+"/channels/room-open/close", toks["admin"], "", hdr)
		if got.status != http.StatusForbidden || !strings.Contains(got.body, "evil.example") {
			t.Errorf("cross-site POST close %v: %+v, want 403 naming the origin", hdr, got)
		}
	}
	if got := request(t, "GET", srv.URL+"/channels/room-open", toks["admin"], "", nil); !strings.Contains(got.body, `"open":true`) {
		t.Errorf("after the refused cross-site close, room-open: %s, want still open", got.body)
	}
	// The same request from the server's own page passes.
	same := map[string]string{"Content-Type": "text/plain", "Sec-Fetch-Site": "same-origin", "Origin": srv.URL}
	if got := request(t, "POST", srv.URL+"/channels/room-open/messages", toks["publisher"], "x", same); got.status != http.StatusOK {
		t.Errorf("same-origin POST: %+v, want 200", got)
	}
	for _, host := range []string{"evil.example", "evil.example:80", "localhost.evil.example"} {
		got := request(t, "GET", srv.URL+"/channels", toks["admin"], "", map[string]string{"Host": host})
		if got.status != http.StatusMisdirectedRequest {
			t.Errorf("GET /channels with Host %s: %+v, want 421", host, got)
		}
	}
	if got := request(t, "GET", srv.URL+"/channels", toks["admin"], "", map[string]string{"Host": "localhost:1234"}); got.status != http.StatusOK {
		t.Errorf("GET /channels with Host localhost:1234: %+v, want 200", got)
	}
	// A WebSocket opened by a page of another site is refused too.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, strings.Replace(srv.URL, "http://", "ws://", 1)+"/ws?id=room-closed&token="+toks["subscriber"],
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin WebSocket: %v, want 403", err)
	}
}

// TestAuthSyntaxBeforeToken checks that a malformed request is told what is
// wrong with it (400, or a bad_request frame on /ws) whatever its token,
// rather than a 403 about a channel it could not name; while a well-formed
// request for a channel the token does not cover gets 403 whether the
// channel exists or not.
func TestAuthSyntaxBeforeToken(t *testing.T) {
	srv := startAuth(t, "sqlite", false, nil)
	toks := testTokens(t)
	setUpRooms(t, srv, toks["admin"])
	for _, name := range []string{"stranger", "none"} {
		tok := toks[name]
		for _, c := range []struct{ method, path, body, msg string }{
			{"GET", "/?id=", "", "missing"},
			{"GET", "/?id=..", "", "not allowed"},
			{"GET", "/channels/..%2F", "", "characters outside"},
			{"DELETE", "/channels/a%20b", "", "characters outside"},
			{"GET", "/channels/a%20b/messages", "", "characters outside"},
			{"GET", "/channels/room-closed/messages?from=-1", "", "from"},
			{"GET", "/channels/room-closed/messages?limit=0", "", "limit"},
			{"POST", "/channels/a%20b/messages", "x", "characters outside"},
			{"POST", "/channels/room-open/messages?wait=soon", "x", "wait"},
			{"POST", "/channels/a%20b/close", "", "characters outside"},
			{"GET", "/channels?limit=0", "", "limit"},
		} {
			got := request(t, c.method, srv.URL+c.path, tok, c.body, nil)
			if got.status != http.StatusBadRequest || !strings.Contains(got.body, c.msg) {
				t.Errorf("%s %s with %s token: %d %s, want 400 mentioning %q", c.method, c.path, name, got.status, got.body, c.msg)
			}
		}
	}
	// A body with a bad id, from a token that may publish somewhere.
	for _, c := range []struct{ path, body string }{
		{"/channels", `{"id":"a b"}`},
		{"/channels", `{"id":"other-1","generator":{"freq":0,"max":5}}`},
		{"/?max=3", ".."},
	} {
		got := request(t, "POST", srv.URL+c.path, toks["stranger"], c.body, nil)
		if got.status != http.StatusBadRequest {
			t.Errorf("POST %s %s with stranger token: %d %s, want 400", c.path, c.body, got.status, got.body)
		}
	}
	for _, query := range []string{"id=..&token=" + toks["stranger"], "id=room-closed&from=x&token=" + toks["stranger"], "id="} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, resp, err := websocket.Dial(ctx, strings.Replace(srv.URL, "http://", "ws://", 1)+"/ws?"+query, nil)
		if err != nil {
			cancel()
			t.Errorf("GET /ws?%s: %v (response %v), want an upgrade and a bad_request frame", query, err, resp != nil)
			continue
		}
		_, b, err := c.Read(ctx)
		if err != nil || !strings.Contains(string(b), `"bad_request"`) {
			t.Errorf("GET /ws?%s: %s %v, want a bad_request frame", query, b, err)
		}
		c.CloseNow()
		cancel()
	}
	// Well-formed: refused the same way for a channel that exists and one
	// that does not.
	for _, path := range []string{"/?id=room-closed", "/?id=nowhere", "/channels/room-closed", "/channels/nowhere/messages"} {
		if got := request(t, "GET", srv.URL+path, toks["stranger"], "", nil); got.status != http.StatusForbidden {
			t.Errorf("GET %s with stranger token: %d %s, want 403", path, got.status, got.body)
		}
	}
}
