package ws_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wstest"
)

// requestXFF sends a request with an X-Forwarded-For header (if xff is not
// empty) and returns the status, the Retry-After header and the body.
func requestXFF(t *testing.T, method, u, xff, body string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

// dialWSFrom opens a WebSocket on channel id as client xff and reads its hello.
func dialWSFrom(ctx context.Context, t *testing.T, base, id, xff string) (*websocket.Conn, int) {
	t.Helper()
	opts := &websocket.DialOptions{HTTPHeader: http.Header{}}
	if xff != "" {
		opts.HTTPHeader.Set("X-Forwarded-For", xff)
	}
	c, resp, err := websocket.Dial(ctx, wsURL(base, id, 0, ""), opts)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { c.CloseNow() })
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatalf("hello: %v", err)
	}
	return c, http.StatusSwitchingProtocols
}

// TestConnectionsPerIP: WebSockets and streaming responses count against
// one bound per client; past it 429 with Retry-After; a closed connection
// frees its place. X-Forwarded-For names the client only from a trusted
// proxy.
func TestConnectionsPerIP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := wstest.Start(t, wstest.Options{Server: func(c *ws.ServerConfig) { c.MaxConnsPerIP = 2 }})
	createChannel(t, srv.URL, "q")
	first, _ := dialWSFrom(ctx, t, srv.URL, "q", "")
	dialWSFrom(ctx, t, srv.URL, "q", "203.0.113.9") // not trusted: still 127.0.0.1
	if _, st := dialWSFrom(ctx, t, srv.URL, "q", ""); st != http.StatusTooManyRequests {
		t.Fatalf("third WebSocket from one IP: %d, want 429", st)
	}
	if st, retry, body := requestXFF(t, "GET", srv.URL+"/?id=q", "", ""); st != http.StatusTooManyRequests || retry == "" || !strings.Contains(body, "too many streaming connections") {
		t.Fatalf("GET /?id= past the bound: %d %q %s, want 429 with Retry-After", st, retry, body)
	}
	if st, _, _ := requestXFF(t, "POST", srv.URL+"/?freq=1000&max=1", "", "refused"); st != http.StatusTooManyRequests {
		t.Fatalf("POST / past the bound: %d, want 429", st)
	}
	if st, _, _ := requestXFF(t, "GET", srv.URL+"/channels/refused", "", ""); st != http.StatusNotFound {
		t.Fatalf("a refused POST / created its channel: %d", st)
	}
	for _, live := range []string{"long-poll", "sse"} {
		st, retry, body := requestXFF(t, "GET", srv.URL+"/v1/stream/q?offset=-1&live="+live, "", "")
		if st != http.StatusTooManyRequests || retry == "" || !strings.Contains(body, "too many streaming connections") {
			t.Fatalf("Durable Streams live=%s past the bound: %d %q %s, want 429 with Retry-After", live, st, retry, body)
		}
	}
	if st, _, body := requestXFF(t, "GET", srv.URL+"/v1/stream/q?offset=-1", "", ""); st != http.StatusOK {
		t.Fatalf("a Durable Streams catch-up read, not a streaming connection: %d %s, want 200", st, body)
	}
	first.Close(websocket.StatusNormalClosure, "")
	wstest.WaitFor(t, 10*time.Second, "the closed connection's place", func() bool {
		c, st := dialWSFrom(ctx, t, srv.URL, "q", "")
		if c != nil {
			c.CloseNow()
		}
		return st == http.StatusSwitchingProtocols
	})

	proxied := wstest.Start(t, wstest.Options{Server: func(c *ws.ServerConfig) {
		c.MaxConnsPerIP = 1
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}})
	createChannel(t, proxied.URL, "q")
	dialWSFrom(ctx, t, proxied.URL, "q", "203.0.113.1")
	dialWSFrom(ctx, t, proxied.URL, "q", "198.51.100.7, 203.0.113.2") // the proxy saw 203.0.113.2
	if _, st := dialWSFrom(ctx, t, proxied.URL, "q", "203.0.113.2"); st != http.StatusTooManyRequests {
		t.Fatalf("second WebSocket of client 203.0.113.2 behind a trusted proxy: %d, want 429", st)
	}
	if _, st := dialWSFrom(ctx, t, proxied.URL, "q", "127.0.0.5, 203.0.113.3"); st != http.StatusSwitchingProtocols {
		t.Fatalf("a new client behind a trusted proxy: %d, want 101", st)
	}
}

// TestCreateRatePerIP: channel creations are limited per client with a
// token bucket; past the burst 429 with Retry-After, other clients are not
// affected.
func TestCreateRatePerIP(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Server: func(c *ws.ServerConfig) {
		c.CreateRate, c.CreateBurst = 0.01, 2 // one token per 100 s: none comes back during the test
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}})
	for i := range 2 {
		if st, _, body := requestXFF(t, "POST", srv.URL+"/channels", "203.0.113.1", fmt.Sprintf(`{"id":"c%d"}`, i)); st != http.StatusCreated {
			t.Fatalf("create %d: %d %s", i, st, body)
		}
	}
	st, retry, body := requestXFF(t, "POST", srv.URL+"/channels", "203.0.113.1", `{"id":"c3"}`)
	if st != http.StatusTooManyRequests || retry != "100" || !strings.Contains(body, "too many channel creations") {
		t.Fatalf("create past the burst: %d Retry-After %q %s, want 429 and 100", st, retry, body)
	}
	if st, _, _ := requestXFF(t, "POST", srv.URL+"/?freq=1000&max=1", "203.0.113.1", "c4"); st != http.StatusTooManyRequests {
		t.Fatalf("POST / past the burst: %d, want 429", st)
	}
	if st, retry, body := requestXFF(t, "PUT", srv.URL+"/v1/stream/c5", "203.0.113.1", ""); st != http.StatusTooManyRequests || retry == "" {
		t.Fatalf("Durable Streams PUT past the burst: %d Retry-After %q %s, want 429", st, retry, body)
	}
	if st, _, _ := requestXFF(t, "HEAD", srv.URL+"/v1/stream/c5", "", ""); st != http.StatusNotFound {
		t.Fatalf("a refused PUT created its stream: %d", st)
	}
	if st, _, body := requestXFF(t, "PUT", srv.URL+"/v1/stream/c5", "203.0.113.2", ""); st != http.StatusCreated {
		t.Fatalf("another client's PUT: %d %s", st, body)
	}
	if st, _, body := requestXFF(t, "POST", srv.URL+"/channels", "203.0.113.2", `{"id":"c3"}`); st != http.StatusCreated {
		t.Fatalf("another client: %d %s", st, body)
	}
}

// TestOpenChannelsAndGeneratorRate: the hub runs at most MaxOpenChannels
// actors and generators of at most MaxGeneratorRate lines per second in
// all; past either 429, and a channel that goes frees its share.
func TestOpenChannelsAndGeneratorRate(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Hub: func(c *hub.Config) { c.MaxOpenChannels = 2; c.MaxGeneratorRate = 100 }})
	createGenerator(t, srv.URL, "g60", 60, 1_000_000)
	if st, retry, body := requestXFF(t, "POST", srv.URL+"/channels", "", `{"id":"g2","generator":{"freq":60,"max":3}}`); st != http.StatusTooManyRequests || retry == "" || !strings.Contains(body, "rate") {
		t.Fatalf("generators past 100 lines/s: %d %q %s, want 429", st, retry, body)
	}
	createGenerator(t, srv.URL, "g40", 40, 1_000_000)
	if st, _, body := requestXFF(t, "POST", srv.URL+"/channels", "", `{"id":"third"}`); st != http.StatusTooManyRequests || !strings.Contains(body, "too many open channels") {
		t.Fatalf("a third open channel: %d %s, want 429", st, body)
	}
	// Taking over a channel left open by another process is refused too.
	if _, err := srv.Store.CreateChannel(context.Background(), "cold", nil); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := requestXFF(t, "POST", srv.URL+"/channels/cold/messages", "", "x"); st != http.StatusTooManyRequests {
		t.Fatalf("a take-over past the bound: %d, want 429", st)
	}
	// Deleting g60 frees its actor and its rate.
	if st, _, body := requestXFF(t, "DELETE", srv.URL+"/channels/g60", "", ""); st != http.StatusNoContent {
		t.Fatalf("delete g60: %d %s", st, body)
	}
	wstest.WaitFor(t, 10*time.Second, "g60's place", func() bool {
		st, _, _ := requestXFF(t, "POST", srv.URL+"/channels", "", `{"id":"g2","generator":{"freq":60,"max":3}}`)
		return st == http.StatusCreated
	})
}

// TestDurablePutQuota: a Durable Streams PUT that finds its stream as it
// asks (200) creates nothing and spends no creation, even once the
// client's budget is spent: a client that PUTs its stream on every
// reconnect is never throttled. A PUT that creates spends one: past the
// burst 429 with Retry-After, and nothing is created, however many PUTs
// come at once. Any other PUT costs a creation too, as a debt when the
// budget is spent, and a client that owes one gets 429 for every PUT.
func TestDurablePutQuota(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Server: func(c *ws.ServerConfig) {
		c.CreateRate, c.CreateBurst = 0.01, 2 // one token per 100 s: none comes back during the test
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}})
	// put PUTs a text stream as client; it may run on any goroutine (a
	// failed request is status 0).
	put := func(name, client string) (int, string, string) {
		req, err := http.NewRequest("PUT", srv.URL+"/v1/stream/"+name, nil)
		if err != nil {
			return 0, "", err.Error()
		}
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("X-Forwarded-For", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err.Error()
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, "", err.Error()
		}
		return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
	}
	const a = "203.0.113.1"
	if st, _, body := put("s0", a); st != http.StatusCreated {
		t.Fatalf("first PUT: %d %s", st, body)
	}
	for i := range 5 {
		if st, _, body := put("s0", a); st != http.StatusOK {
			t.Fatalf("PUT %d of an existing stream, with a creation left: %d %s, want 200", i, st, body)
		}
	}
	if st, _, body := put("s1", a); st != http.StatusCreated {
		t.Fatalf("second creation, within the burst: %d %s", st, body)
	}
	if st, retry, body := put("s2", a); st != http.StatusTooManyRequests || retry != "100" || !strings.Contains(body, "too many channel creations") {
		t.Fatalf("a creation past the burst: %d Retry-After %q %s, want 429 and 100", st, retry, body)
	}
	if st, _, _ := requestXFF(t, "HEAD", srv.URL+"/v1/stream/s2", "", ""); st != http.StatusNotFound {
		t.Fatalf("a refused PUT created its stream: %d", st)
	}
	for _, name := range []string{"s0", "s1", "s0"} {
		if st, _, body := put(name, a); st != http.StatusOK {
			t.Fatalf("PUT of existing %s with the budget spent: %d %s, want 200", name, st, body)
		}
	}
	// Asking an existing stream for another configuration creates nothing
	// either, but only 200 is free: the budget owes one more creation.
	if st, _, body := requestXFF(t, "PUT", srv.URL+"/v1/stream/s0", a, ""); st != http.StatusConflict {
		t.Fatalf("PUT of s0 with another content type: %d %s, want 409", st, body)
	}
	if st, retry, _ := put("s3", a); st != http.StatusTooManyRequests || retry != "200" {
		t.Fatalf("a creation with a creation owed: %d Retry-After %q, want 429 and 200", st, retry)
	}
	// Owing, the client may not even PUT a stream that exists: else each
	// stream deleted or expired between the look and the PUT would be
	// created again unpaid, one more debt each time.
	if st, retry, _ := put("s1", a); st != http.StatusTooManyRequests || retry != "200" {
		t.Fatalf("PUT of an existing stream with a creation owed: %d Retry-After %q, want 429 and 200", st, retry)
	}

	// Concurrent creations of another client take the burst and no more.
	const b, n = "203.0.113.2", 8
	statuses := make(chan int, n)
	for i := range n {
		go func() {
			st, _, _ := put(fmt.Sprintf("b%d", i), b)
			statuses <- st
		}()
	}
	created := 0
	for range n {
		switch st := <-statuses; st {
		case http.StatusCreated:
			created++
		case http.StatusTooManyRequests:
		default:
			t.Errorf("a concurrent PUT: %d", st)
		}
	}
	if created != 2 {
		t.Fatalf("%d of %d concurrent PUTs created their stream, want the burst of 2", created, n)
	}
}
