package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/messages-server/messages/ws/auth"
)

// rawExchange sends the request head req (with an empty body) on a new raw
// TCP connection and returns the answer's status, WWW-Authenticate and
// body. The request is written byte for byte as given: no client library
// fixes its Host, Origin or headers.
func rawExchange(t *testing.T, base, method, target, host string, hdr ...string) (int, string, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\nConnection: close\r\n", method, target, host)
	for _, h := range hdr {
		head += h + "\r\n"
	}
	if _, err := io.WriteString(c, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, target, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(b)
}

// upgrade is the headers of a WebSocket handshake.
func upgrade() []string {
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	return []string{"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key)}
}

// TestFaultCrossSiteAndRebinding attacks a server in open mode with raw
// requests as a web page would make them: no-preflight text/plain POSTs
// from another site are refused with 403, requests for another Host (DNS
// rebinding: the attacker's name resolving to 127.0.0.1) get 421, WebSocket
// handshakes included, and the channel is untouched.
func TestFaultCrossSiteAndRebinding(t *testing.T) {
	t.Parallel()
	s := start(t, "-database-url", sqliteArg(t))
	do(t, "POST", s.base+"/channels", `{"id":"room"}`, http.StatusCreated)
	own := strings.TrimPrefix(s.base, "http://")
	for _, c := range []struct {
		method, target, host string
		hdr                  []string
		want                 int
	}{
		{"POST", "/channels/room/close", own, []string{"Origin: https://evil.example", "Sec-Fetch-Site: cross-site", "Content-Type: text/plain"}, 403},
		{"POST", "/channels/room/messages", own, []string{"Origin: https://evil.example", "Content-Type: text/plain"}, 403},
		{"POST", "/channels", own, []string{"Sec-Fetch-Site: cross-site", "Content-Type: text/plain"}, 403},
		{"GET", "/channels", "evil.example", nil, 421},
		{"GET", "/channels/room", "evil.example:" + strings.Split(own, ":")[1], nil, 421},
		{"GET", "/?id=room", "rebind.evil.example", nil, 421},
		{"GET", "/ws?id=room", "evil.example", upgrade(), 421},
		{"GET", "/ws?id=room", own, append(upgrade(), "Origin: https://evil.example"), 403},
	} {
		if st, _, b := rawExchange(t, s.base, c.method, c.target, c.host, c.hdr...); st != c.want {
			t.Errorf("%s %s, Host %s, %v: %d %s, want %d", c.method, c.target, c.host, c.hdr, st, b, c.want)
		}
	}
	var info struct {
		Open    bool
		LastSeq int64 `json:"last_seq"`
	}
	decodeInto(t, do(t, "GET", s.base+"/channels/room", "", http.StatusOK), &info)
	if !info.Open || info.LastSeq != 0 {
		t.Errorf("after the attacks room is %+v, want open and empty", info)
	}
}

// TestFaultBadTokens sends raw requests with missing, malformed, expired,
// wrongly signed, unsigned (alg none) and under-privileged tokens to a
// server with -jwt-secret: 401 with a Bearer challenge, or 403 for a valid
// token without the right, on plain requests and WebSocket handshakes, and
// nothing changes. ws/authz_test.go checks every endpoint against every
// kind of token; this checks the binary as configured by its flags.
func TestFaultBadTokens(t *testing.T) {
	t.Parallel()
	s := start(t, "-database-url", sqliteArg(t), "-jwt-secret", testSecret)
	admin := token(t, auth.Claims{Admin: true})
	if st, _, b := send(t, "POST", s.base+"/channels", `{"id":"room"}`, bearer(admin)); st != http.StatusCreated {
		t.Fatalf("create: %d %s", st, b)
	}
	sign := func(secret string, c auth.Claims, ttl time.Duration) string {
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(ttl))
		tok, err := auth.SignHS256([]byte(secret), &c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	unsigned, err := jwt.NewWithClaims(jwt.SigningMethodNone, &auth.Claims{Admin: true,
		RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", 401},
		{"malformed", "not-a-jwt", 401},
		{"expired", sign(testSecret, auth.Claims{Admin: true}, -time.Hour), 401},
		{"signed with another key", sign("another secret that is also 32 bytes long", auth.Claims{Admin: true}, time.Hour), 401},
		{"unsigned (alg none)", unsigned, 401},
		{"subscribe only", sign(testSecret, auth.Claims{Subscribe: []string{"room"}}, time.Hour), 403},
		{"publish to others", sign(testSecret, auth.Claims{Publish: []string{"other-*"}, Subscribe: []string{"other"}}, time.Hour), 403},
	} {
		var hdr []string
		if c.token != "" {
			hdr = []string{"Authorization: Bearer " + c.token, "Content-Type: text/plain"}
		}
		st, challenge, b := rawExchange(t, s.base, "POST", "/channels/room/close", strings.TrimPrefix(s.base, "http://"), hdr...)
		if st != c.want || !strings.HasPrefix(challenge, "Bearer") {
			t.Errorf("close with %s: %d %q %s, want %d with a Bearer challenge", c.name, st, challenge, b, c.want)
		}
		wsWant := c.want
		if c.name == "subscribe only" {
			wsWant = http.StatusSwitchingProtocols
		}
		st, _, b = rawExchange(t, s.base, "GET", "/ws?id=room&token="+c.token, strings.TrimPrefix(s.base, "http://"), upgrade()...)
		if st != wsWant {
			t.Errorf("WebSocket with %s: %d %s, want %d", c.name, st, b, wsWant)
		}
	}
	st, _, b := send(t, "GET", s.base+"/channels/room", "", bearer(admin))
	if st != http.StatusOK || !strings.Contains(b, `"open":true`) || !strings.Contains(b, `"last_seq":0`) {
		t.Errorf("after the bad tokens room is %d %s, want open and empty", st, b)
	}
}
