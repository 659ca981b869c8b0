package ws_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/messages-server/messages/ws/wstest"
)

// TestKeepAlive: an idle subscription is pinged, and stays open.
func TestKeepAlive(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{PingInterval: 50 * time.Millisecond})
	createChannel(t, srv.URL, "idle")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pings := make(chan struct{}, 100)
	c, _, err := websocket.Dial(ctx, strings.Replace(srv.URL, "http", "ws", 1)+"/ws?id=idle", &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool {
			pings <- struct{}{}
			return true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	closed := make(chan error, 1)
	go func() { // reads hello and live, and answers pings
		for {
			if _, _, err := c.Read(ctx); err != nil {
				closed <- err
				return
			}
		}
	}()
	for i := 0; i < 3; i++ {
		select {
		case <-pings:
		case err := <-closed:
			t.Fatalf("connection closed while idle: %v", err)
		case <-ctx.Done():
			t.Fatalf("got %d pings on an idle connection, want 3", i)
		}
	}
}

// TestOrigins: a page of another origin may not open a WebSocket unless its
// origin is allowed.
func TestOrigins(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{AllowedOrigins: []string{"app.example.com"}})
	createChannel(t, srv.URL, "o")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for origin, ok := range map[string]bool{
		"http://evil.example.com": false,
		"https://app.example.com": true,
		srv.URL:                   true, // the server's own origin
	} {
		h := http.Header{"Origin": {origin}}
		c, resp, err := websocket.Dial(ctx, wsURL(srv.URL, "o", 0, ""), &websocket.DialOptions{HTTPHeader: h})
		if ok != (err == nil) {
			t.Errorf("origin %s: allowed=%v, err %v", origin, ok, err)
		}
		if c != nil {
			c.CloseNow()
		}
		if !ok && (resp == nil || resp.StatusCode != http.StatusForbidden) {
			t.Errorf("origin %s: want 403, got %v", origin, resp)
		}
	}
}

// TestWSWithoutUpgrade: a plain GET /ws gets a JSON 426 that says how to
// upgrade, like every other error.
func TestWSWithoutUpgrade(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	createChannel(t, srv.URL, "plain")
	for _, hdr := range []http.Header{
		{},
		{"Connection": {"keep-alive"}, "Upgrade": {"websocket"}},
		{"Connection": {"Upgrade"}, "Upgrade": {"h2c"}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/ws?id=plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Upgrade") != "websocket" ||
			resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET /ws with %v: %d, Upgrade %q, Content-Type %q, want 426, websocket, application/json",
				hdr, resp.StatusCode, resp.Header.Get("Upgrade"), resp.Header.Get("Content-Type"))
		}
		if e := decodeJSON[struct{ Error string }](t, b); !strings.Contains(e.Error, "WebSocket") {
			t.Errorf("GET /ws with %v: error %q does not say a WebSocket is needed", hdr, e.Error)
		}
	}
}
