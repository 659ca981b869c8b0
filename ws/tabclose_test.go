package ws_test

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/wstest"
)

// lockedLog is a log destination safe for concurrent writers.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTabCloseNotAWarning: a browser tab closing while its WebSocket is
// being written to (a close frame, then the socket shut at once) is an
// ordinary end of a subscription: nothing is logged above debug.
func TestTabCloseNotAWarning(t *testing.T) {
	var logs lockedLog
	srv := wstest.Start(t, wstest.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	createGenerator(t, srv.URL, "tab", 5000, 1_000_000)
	addr := strings.TrimPrefix(srv.URL, "http://")
	for i := range 20 {
		closeLikeATab(t, addr, "tab", i)
	}
	// Every connection's end is counted once the server has handled it.
	wstest.WaitFor(t, 20*time.Second, "20 subscriptions to end", func() bool {
		return metricValue(t, srv, "messages_websocket_connections_total") >= 20
	})
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			t.Errorf("a tab closing is logged as: %s", l)
		}
	}
}

// closeLikeATab opens a WebSocket on channel id, reads some frames, then
// sends a close frame with 1001 (going away) and closes the socket
// without waiting for the answer, as a browser closing a tab does.
func closeLikeATab(t *testing.T, addr, id string, i int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /ws?id=%s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", id, addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade %d: %v %v", i, resp, err)
	}
	if _, err := br.Peek(1 + i%4*1000); err != nil { // some frames arrived
		t.Fatal(err)
	}
	// A masked close frame with status 1001 and no reason.
	mask := [4]byte{1, 2, 3, 4}
	payload := []byte{0x03, 0xe9}
	frame := []byte{0x88, 0x80 | byte(len(payload)), mask[0], mask[1], mask[2], mask[3]}
	for j, b := range payload {
		frame = append(frame, b^mask[j%4])
	}
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // reset: what is unread is thrown away
	}
}
