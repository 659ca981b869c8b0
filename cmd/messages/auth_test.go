package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/messages-server/messages/internal/clitest"
	"github.com/messages-server/messages/ws/auth"
)

const testSecret = "a test secret that is at least 32 bytes long"

// sqliteArg is a -database-url argument naming a fresh SQLite file.
func sqliteArg(t *testing.T) string {
	return (&url.URL{Scheme: "sqlite", Path: filepath.Join(t.TempDir(), "m.db")}).String()
}

// token mints a token signed with testSecret.
func token(t *testing.T, c auth.Claims) string {
	t.Helper()
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
	tok, err := auth.SignHS256([]byte(testSecret), &c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// send sends a request with the headers hdr ("Host" sets the Host) and
// returns the status, the WWW-Authenticate header and the body.
func send(t *testing.T, method, u, body string, hdr map[string]string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(b)
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// TestOpenModeStaysOnLoopback checks the listen address rules of open mode:
// loopback by default, and a start-up error naming the way out on any other
// address unless -insecure-open is given.
func TestOpenModeStaysOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		addr string
	}{
		{nil, nil, "127.0.0.1:3000"},
		{[]string{"-jwt-secret", testSecret}, nil, ":3000"},
		{nil, map[string]string{"JWT_SECRET": testSecret}, ":3000"},
		{[]string{"-addr", "0.0.0.0:3000", "-insecure-open"}, nil, "0.0.0.0:3000"},
		{nil, map[string]string{"LISTEN_ADDR": ":8080", "INSECURE_OPEN": "true"}, ":8080"},
		{[]string{"-addr", "localhost:3000"}, nil, "localhost:3000"},
		{[]string{"-addr", "[::1]:3000"}, nil, "[::1]:3000"},
	} {
		c, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		if err != nil || c.addr != tc.addr {
			t.Errorf("args %q env %v: addr %q, %v; want %q", tc.args, tc.env, c.addr, err, tc.addr)
		}
	}
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		var logs syncBuffer
		err := run(t.Context(), []string{"-addr", addr, "-database-url", sqliteArg(t)}, noEnv, &logs, nil)
		if err == nil || !strings.Contains(err.Error(), "open mode refuses to listen on "+addr) ||
			!strings.Contains(err.Error(), "JWT_SECRET") || !strings.Contains(err.Error(), "-insecure-open") {
			t.Errorf("open mode on %s: %v, want a start-up error naming JWT_SECRET and -insecure-open\n%s", addr, err, &logs)
		}
	}
	code, out := clitest.Run(t, nil, "-addr", ":0")
	// A flag is the cause: the reason once, then the usage, and exit 2.
	if code != 2 || strings.Count(out, "open mode refuses to listen on :0") != 1 || !strings.Contains(out, "Usage of messages") {
		t.Errorf("messages -addr :0 exits %d, want 2 with the reason once and the usage:\n%s", code, out)
	}
	code, out = clitest.Run(t, nil, "-jwt-secret", "short")
	if code != 2 || !strings.Contains(out, "use at least 32") {
		t.Errorf("messages -jwt-secret short exits %d, want 2 asking for 32 bytes:\n%s", code, out)
	}
}

// TestRunWithTokens runs the server with -jwt-secret: requests need tokens,
// the token given in the query of the text stream is never logged, and
// cross-site writes are refused even with a token.
func TestRunWithTokens(t *testing.T) {
	s := start(t, "-database-url", sqliteArg(t), "-jwt-secret", testSecret, "-log-level", "debug")
	if !strings.Contains(s.log.String(), "tokens required") {
		t.Errorf("start-up log does not say tokens are required:\n%s", s.log)
	}
	pub := token(t, auth.Claims{Publish: []string{"news-*"}})
	sub := token(t, auth.Claims{Subscribe: []string{"news-*"}})

	if st, ch, _ := send(t, "POST", s.base+"/channels", `{"id":"news-1"}`, nil); st != 401 || ch != `Bearer realm="messages"` {
		t.Fatalf("create without a token: %d %q, want 401 with a Bearer challenge", st, ch)
	}
	if st, _, b := send(t, "POST", s.base+"/channels", `{"id":"news-1"}`, bearer(pub)); st != 201 {
		t.Fatalf("create with a publish token: %d %s", st, b)
	}
	if st, _, b := send(t, "POST", s.base+"/channels/news-1/messages?wait=persisted", "hi\n", bearer(sub)); st != 403 {
		t.Fatalf("append with a subscribe token: %d %s, want 403", st, b)
	}
	if st, _, b := send(t, "POST", s.base+"/channels/news-1/messages?wait=persisted", "hi\n", bearer(pub)); st != 200 {
		t.Fatalf("append with a publish token: %d %s", st, b)
	}
	// A cross-site text/plain POST, which a browser sends without asking.
	cross := map[string]string{"Authorization": "Bearer " + pub, "Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
	if st, _, b := send(t, "POST", s.base+"/channels/news-1/close", "", cross); st != 403 {
		t.Fatalf("cross-site close: %d %s, want 403", st, b)
	}
	if st, _, b := send(t, "POST", s.base+"/channels/news-1/close", "", bearer(pub)); st != 200 {
		t.Fatalf("close: %d %s", st, b)
	}
	if st, _, b := send(t, "GET", s.base+"/?id=news-1&token="+sub, "", nil); st != 200 || b != "hi\n" {
		t.Fatalf("GET /?id=&token=: %d %q, want 200 hi", st, b)
	}
	expired := func() string {
		c := auth.Claims{Subscribe: []string{"*"}}
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
		tok, _ := auth.SignHS256([]byte(testSecret), &c)
		return tok
	}()
	if st, ch, _ := send(t, "GET", s.base+"/?id=news-1&token="+expired, "", nil); st != 401 || !strings.Contains(ch, "invalid_token") {
		t.Fatalf("GET /?id=&token=<expired>: %d %q, want 401 invalid_token", st, ch)
	}
	// With tokens every Host is served unless -allowed-hosts says otherwise.
	if st, _, b := send(t, "GET", s.base+"/?id=news-1&token="+sub, "", map[string]string{"Host": "messages.example"}); st != 200 {
		t.Fatalf("with tokens, Host messages.example: %d %s, want 200", st, b)
	}
	logs := s.log.String()
	if !strings.Contains(logs, "token refused") {
		t.Errorf("the refused token was not logged at debug level (the check below misses its point):\n%s", logs)
	}
	for _, tok := range []string{pub, sub, expired} {
		if strings.Contains(logs, tok[strings.LastIndexByte(tok, '.')+1:]) {
			t.Fatalf("a token appears in the logs:\n%s", logs)
		}
	}
}

// TestRunGuards checks the Host allow-list of open mode (loopback names by
// default), -allowed-hosts, -allowed-origins for cross-site writes, and
// -public-subscribe.
func TestRunGuards(t *testing.T) {
	s := start(t, "-database-url", sqliteArg(t), "-log-level", "debug")
	if !strings.Contains(s.log.String(), "open mode") {
		t.Errorf("start-up log does not say the server is open:\n%s", s.log)
	}
	do(t, "POST", s.base+"/channels", `{"id":"c"}`, http.StatusCreated)
	for host, want := range map[string]int{"evil.example": 421, "evil.example:3000": 421, "localhost:3000": 200, "127.0.0.1": 200, "[::1]:80": 200} {
		if st, _, b := send(t, "GET", s.base+"/channels/c?token=x", "", map[string]string{"Host": host}); st != want && !(want == 200 && st == 401) {
			t.Errorf("open mode, Host %s: %d %s, want %d", host, st, b, want)
		}
	}
	if strings.Contains(s.log.String(), "token=x") || !strings.Contains(s.log.String(), "path=/channels/c") {
		t.Errorf("the refused request is not logged by its path alone:\n%s", s.log)
	}
	if st, _, b := send(t, "POST", s.base+"/channels/c/close", "", map[string]string{"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"}); st != 403 {
		t.Errorf("open mode, cross-site close: %d %s, want 403", st, b)
	}
	s.stop(t)

	s = start(t, "-database-url", sqliteArg(t), "-jwt-secret", testSecret, "-public-subscribe",
		"-allowed-hosts", "messages.example, localhost", "-allowed-origins", "app.example")
	admin := token(t, auth.Claims{Admin: true})
	if st, _, b := send(t, "POST", s.base+"/channels", `{"id":"c"}`, map[string]string{"Authorization": "Bearer " + admin, "Host": "localhost"}); st != 201 {
		t.Fatalf("create: %d %s", st, b)
	}
	for host, want := range map[string]int{"messages.example": 200, "MESSAGES.example:443": 200, "localhost:1": 200, "127.0.0.1": 421, "evil.example": 421} {
		if st, _, b := send(t, "GET", s.base+"/channels/c", "", map[string]string{"Host": host}); st != want {
			t.Errorf("-allowed-hosts, Host %s: %d %s, want %d", host, st, b, want)
		}
	}
	// -public-subscribe: reading needs no token, writing does.
	if st, _, b := send(t, "POST", s.base+"/channels/c/messages", "x", map[string]string{"Host": "localhost"}); st != 401 {
		t.Errorf("-public-subscribe, append without a token: %d %s, want 401", st, b)
	}
	app := map[string]string{"Authorization": "Bearer " + admin, "Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site", "Origin": "https://app.example", "Host": "localhost"}
	if st, _, b := send(t, "POST", s.base+"/channels/c/messages", "x", app); st != 200 {
		t.Errorf("a POST from an allowed origin: %d %s, want 200", st, b)
	}
	app["Origin"] = "https://evil.example"
	if st, _, b := send(t, "POST", s.base+"/channels/c/messages", "x", app); st != 403 {
		t.Errorf("a POST from another origin: %d %s, want 403", st, b)
	}
}

// TestOpenModeAnswersItsLoopbackIP: in open mode on a loopback address
// other than 127.0.0.1 (any of 127.0.0.0/8), the server answers requests
// for the address it listens on, so the viewer URL it prints works. Its
// default Host allow-list used to hold only localhost, 127.0.0.1 and
// [::1], and every request to http://127.0.0.2:PORT/ got 421.
func TestOpenModeAnswersItsLoopbackIP(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux routes all of 127.0.0.0/8 to loopback without configuration")
	}
	s := start(t, "-addr", "127.0.0.2:0", "-database-url", sqliteArg(t))
	if !strings.Contains(s.log.String(), "viewer="+s.base+"/") {
		t.Fatalf("the start-up log does not print the viewer URL %s/:\n%s", s.base, s.log)
	}
	for _, path := range []string{"/", "/channels"} {
		if st, _, b := send(t, "GET", s.base+path, "", nil); st != 200 {
			t.Errorf("open mode on 127.0.0.2, GET %s%s: %d %s, want 200", s.base, path, st, b)
		}
	}
	if st, _, b := send(t, "GET", s.base+"/channels", "", map[string]string{"Host": "evil.example"}); st != 421 {
		t.Errorf("open mode on 127.0.0.2, Host evil.example: %d %s, want 421", st, b)
	}
}

// TestJWTIssuerAudienceFlags reads -jwt-issuer and -jwt-audience and their
// variables (the flag over the variable), and refuses them without a key:
// in open mode no token is looked at, so nothing would be checked.
func TestJWTIssuerAudienceFlags(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		env      map[string]string
		iss, aud string
		err      string
	}{
		{[]string{"-jwt-secret", testSecret}, nil, "", "", ""},
		{[]string{"-jwt-secret", testSecret, "-jwt-issuer", "https://id.example/", "-jwt-audience", "messages"}, nil, "https://id.example/", "messages", ""},
		{nil, map[string]string{"JWT_SECRET": testSecret, "JWT_ISSUER": "https://id.example/", "JWT_AUDIENCE": "messages"}, "https://id.example/", "messages", ""},
		{[]string{"-jwt-issuer", "https://flag.example/", "-jwt-audience", "flag"}, map[string]string{"JWT_SECRET": testSecret, "JWT_ISSUER": "https://env.example/", "JWT_AUDIENCE": "env"}, "https://flag.example/", "flag", ""},
		{[]string{"-jwt-jwks", "keys.json", "-jwt-audience", "messages"}, nil, "", "messages", ""},
		{[]string{"-jwt-issuer", "https://id.example/"}, nil, "", "", "-jwt-issuer (JWT_ISSUER) given without a key"},
		{nil, map[string]string{"JWT_AUDIENCE": "messages"}, "", "", "-jwt-audience (JWT_AUDIENCE) given without a key"},
	} {
		c, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "JWT_SECRET")):
			t.Errorf("args %q env %v: error %v, want one saying %q and naming JWT_SECRET", tc.args, tc.env, err, tc.err)
		case tc.err == "" && (err != nil || c.auth.jwtIssuer != tc.iss || c.auth.jwtAudience != tc.aud):
			t.Errorf("args %q env %v: issuer %q, audience %q, %v; want %q, %q", tc.args, tc.env, c.auth.jwtIssuer, c.auth.jwtAudience, err, tc.iss, tc.aud)
		}
	}
	code, out := clitest.Run(t, nil, "-jwt-audience", "messages")
	if code != 2 || strings.Count(out, "given without a key") != 1 {
		t.Errorf("messages -jwt-audience messages exits %d, want 2 with the reason once:\n%s", code, out)
	}
}

// TestRunChecksIssuerAudience runs the server with -jwt-issuer and
// -jwt-audience: a token signed with its secret but for another issuer or
// audience gets a 401 saying so.
func TestRunChecksIssuerAudience(t *testing.T) {
	s := start(t, "-database-url", sqliteArg(t), "-jwt-secret", testSecret,
		"-jwt-issuer", "https://id.example/", "-jwt-audience", "messages")
	mint := func(iss string, aud ...string) string {
		c := auth.Claims{Admin: true}
		c.Issuer, c.Audience = iss, aud
		return token(t, c)
	}
	if st, _, b := send(t, "GET", s.base+"/channels", "", bearer(mint("https://id.example/", "billing", "messages"))); st != 200 {
		t.Fatalf("a token of the issuer for this audience: %d %s, want 200", st, b)
	}
	for _, tc := range []struct{ name, tok, msg string }{
		{"no iss, no aud", mint(""), "the token has no issuer (iss)"},
		{"another issuer", mint("https://other.example/", "messages"), "the token's issuer (iss) is not the one this server accepts"},
		{"another audience", mint("https://id.example/", "billing"), `the token's audience (aud) does not include \"messages\"`},
	} {
		st, ch, b := send(t, "GET", s.base+"/channels", "", bearer(tc.tok))
		if st != 401 || !strings.Contains(ch, `error="invalid_token"`) || !strings.Contains(b, tc.msg) {
			t.Errorf("%s: %d %q %s, want 401 invalid_token saying %q", tc.name, st, ch, b, tc.msg)
		}
	}
}
