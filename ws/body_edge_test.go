package ws_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/wstest"
)

// startEdge starts a server with tokens, the Guard and a body timeout of an
// hour, so that nothing the tests see comes from that timeout.
func startEdge(t testing.TB, maxConns int) *wstest.Server {
	t.Helper()
	a, err := auth.New(context.Background(), auth.Config{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	g, err := auth.NewGuard(auth.GuardConfig{AllowedHosts: auth.LoopbackHosts()})
	if err != nil {
		t.Fatal(err)
	}
	return wstest.Start(t, wstest.Options{Backend: "sqlite", Auth: a, Guard: g, Server: func(c *ws.ServerConfig) {
		c.BodyTimeout = time.Hour
		c.MaxConnsPerIP = maxConns
	}})
}

// stalledRequest opens a connection and sends a request head announcing
// a body of 100 bytes, then only 2 of them.
func stalledRequest(t testing.TB, base, method, path string, hdr ...string) net.Conn {
	t.Helper()
	u, _ := url.Parse(base)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	host := u.Host
	var b strings.Builder
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			host = hdr[i+1]
			continue
		}
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n%s\r\nab", method, path, host, b.String())
	return c
}

// countedStalledRequest is stalledRequest for an append that asks for
// "100 Continue": net/http sends it when the handler starts reading the
// body, so once it has come the request holds its place in the client's
// connections. Then it sends 2 bytes of the 100 it announced.
func countedStalledRequest(t testing.TB, base, path, token string) net.Conn {
	t.Helper()
	u, _ := url.Parse(base)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: text/plain\r\n"+
		"Content-Length: 100\r\nExpect: 100-continue\r\n\r\n", path, u.Host, token)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("waiting for 100 Continue: %v", err)
	}
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("stalled append answered %d, want 100 Continue", resp.StatusCode)
	}
	_ = c.SetReadDeadline(time.Time{})
	fmt.Fprint(c, "ab")
	return c
}

// closedByServer reads c until the server closes it, within d, and
// returns the response's status (0 if none came).
func closedByServer(t testing.TB, c net.Conn, d time.Duration) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	br := bufio.NewReader(c)
	status := 0
	if resp, err := http.ReadResponse(br, nil); err == nil {
		status = resp.StatusCode
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the server kept the connection open %v after answering %d", d, status)
	}
	return status
}

// TestRefusedStalledBodiesAreClosed: a request announcing a body it does
// not send, refused before its body is read (404, 405, 400, 401, 403
// cross-site, 421 Host), is answered and its connection closed at once,
// not held until the body timeout (an hour here) or for ever.
func TestRefusedStalledBodiesAreClosed(t *testing.T) {
	srv := startEdge(t, 0)
	for _, c := range []struct {
		name, method, path string
		hdr                []string
		want               int
	}{
		{"404", "POST", "/nope", nil, http.StatusNotFound},
		{"405", "PUT", "/channels", nil, http.StatusMethodNotAllowed},
		{"400", "POST", "/channels/a%20b/messages", nil, http.StatusBadRequest},
		{"401", "POST", "/channels/room/messages", nil, http.StatusUnauthorized},
		{"401 stream", "POST", "/v1/stream/room", nil, http.StatusUnauthorized},
		{"403 cross-site", "POST", "/channels/room/messages", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"421", "POST", "/channels/room/messages", []string{"Host", "rebound.example"}, http.StatusMisdirectedRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := stalledRequest(t, srv.URL, c.method, c.path, c.hdr...)
			if got := closedByServer(t, conn, 10*time.Second); got != c.want {
				t.Errorf("status %d, want %d", got, c.want)
			}
		})
	}
}

// TestStalledBodiesCountAsConnections: requests whose body is still
// arriving count in -max-conns-per-ip while they wait: with a bound of 2,
// two stalled appends make a third request get 429 (its connection
// closed), and once they are gone requests pass again.
func TestStalledBodiesCountAsConnections(t *testing.T) {
	srv := startEdge(t, 2)
	admin := mint(t, testSecret, auth.Claims{Admin: true}, time.Hour)
	if got := request(t, "POST", srv.URL+"/channels", admin, `{"id":"room"}`, nil); got.status != http.StatusCreated {
		t.Fatalf("create: %d %s", got.status, got.body)
	}
	path := "/channels/room/messages"
	// Each stalled request is known to be counted (its handler has begun
	// reading its body) before the next request is sent: a probe that
	// reached the server first would take the second place itself.
	stalled := []net.Conn{
		countedStalledRequest(t, srv.URL, path, admin),
		countedStalledRequest(t, srv.URL, path, admin),
	}
	wstest.WaitFor(t, 10*time.Second, "a request past the bound to get 429", func() bool {
		return request(t, "POST", srv.URL+path, admin, "x", nil).status == http.StatusTooManyRequests
	})
	for _, c := range stalled {
		c.Close()
	}
	wstest.WaitFor(t, 10*time.Second, "requests to pass again", func() bool {
		return request(t, "POST", srv.URL+path, admin, "x", nil).status == http.StatusOK
	})
}
