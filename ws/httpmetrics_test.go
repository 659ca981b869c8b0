package ws_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/ws/wstest"
)

// TestHTTPRequestMetrics: requests are counted by route pattern, method and
// status, a WebSocket as 101, a path no route matches as "other"; no label
// carries a channel id.
func TestHTTPRequestMetrics(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite"})
	createChannel(t, srv.URL, "metered-1")
	appendMsg(t, srv.URL, "metered-1", "a")
	do(t, "GET", srv.URL+"/channels/metered-404", "", nil)
	do(t, "GET", srv.URL+"/no/such/thing", "", nil)
	do(t, "PATCH", srv.URL+"/channels", "", nil)
	do(t, "BREW", srv.URL+"/channels", "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, wsURL(srv.URL, "metered-1", 0, ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil { // hello
		t.Fatal(err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	_, body := do(t, "GET", srv.URL+"/metrics", "", nil)
	want := []string{
		`messages_http_requests_total{method="POST",route="/channels",status="201"} 1`,
		`messages_http_requests_total{method="POST",route="/channels/{id}/messages",status="200"} 1`,
		`messages_http_requests_total{method="GET",route="/channels/{id}",status="404"} 1`,
		`messages_http_requests_total{method="GET",route="other",status="404"} 1`,
		`messages_http_requests_total{method="OTHER",route="/channels",status="405"} 2`,
		`messages_http_request_duration_seconds_count{method="POST",route="/channels"} 1`,
	}
	for _, w := range want {
		if !strings.Contains(string(body), w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	// The WebSocket is counted once its handler returns.
	wstest.WaitFor(t, 10*time.Second, "the WebSocket to be counted", func() bool {
		_, body = do(t, "GET", srv.URL+"/metrics", "", nil)
		return strings.Contains(string(body), `messages_http_requests_total{method="GET",route="/ws",status="101"} 1`)
	})
	if strings.Contains(string(body), "metered-") {
		t.Errorf("a channel id is in a label:\n%s", body)
	}
}
