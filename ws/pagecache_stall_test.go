//go:build unix

package ws_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/wstest"
)

// TestHistoryCacheStalledReader: a reader that stops reading in the middle
// of a cached page (its TCP window closed, the server's write blocked)
// holds up nobody else: other readers of the same page get all of it, and
// the stalled one, once it reads again, gets the rest exactly.
func TestHistoryCacheStalledReader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite", Server: func(c *ws.ServerConfig) {
		c.WriteTimeout = time.Minute // the stalled reader is not cut off during the test
	}})
	// More history, in one page (of 1000 seqs), than the largest send
	// buffer the kernel gives a socket plus the stalled reader's 4 KiB
	// receive buffer, so that the stalled reader's writer must block.
	const id, size = "stall", 60_000
	n := int(maxSendBuffer(t)+1<<20) / size
	createChannel(t, srv.URL, id)
	var want strings.Builder
	for i := range n {
		msg := strings.Repeat(string(rune('a'+i%26)), size-1) + "\n"
		appendMsg(t, srv.URL, id, msg)
		want.WriteString(msg)
	}
	if st, b := do(t, "POST", srv.URL+"/channels/"+id+"/close", "", nil); st != http.StatusOK {
		t.Fatalf("close: %d %s", st, b)
	}

	tiny := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	stalled, _, err := websocket.Dial(ctx, wsURL(srv.URL, id, 0, ""), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: tiny.DialContext}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.CloseNow()
	stalled.SetReadLimit(16 << 20)
	if _, _, err := stalled.Read(ctx); err != nil { // the hello; then it stops reading
		t.Fatal(err)
	}

	const readers = 5
	frames := make([][]byte, readers)
	errs := make([]error, readers)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() { frames[i], errs[i] = readFrames(ctx, wsURL(srv.URL, id, 0, "")) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("reader %d, beside a stalled one: %v", i, err)
		}
		if streamContent(t, frames[i], 1) != want.String() {
			t.Fatalf("reader %d, beside a stalled one: the stream differs from the channel", i)
		}
	}
	if m := metricValue(t, srv, "messages_history_cache_misses_total"); m != 1 {
		t.Errorf("%v page loads, want 1: the stalled reader's page served the others", m)
	}

	var got []byte
	for {
		_, b, err := stalled.Read(ctx)
		if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
			break
		}
		if err != nil {
			t.Fatalf("the stalled reader, reading again: %v", err)
		}
		got = append(append(got, b...), '\n')
	}
	if streamContent(t, got, 1) != want.String() {
		t.Fatalf("the stalled reader got %d frame bytes that differ from the channel", len(got))
	}
}

// maxSendBuffer is the most the kernel lets a TCP socket's send buffer grow
// to (the last field of net.ipv4.tcp_wmem; 4 MiB if unreadable).
func maxSendBuffer(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem")
	if f := strings.Fields(string(b)); err == nil && len(f) == 3 {
		if v, err := strconv.ParseInt(f[2], 10, 64); err == nil {
			return v
		}
	}
	t.Logf("tcp_wmem unreadable (%v): assuming 4 MiB", err)
	return 4 << 20
}
