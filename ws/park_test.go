package ws

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wire"
)

// waitGoroutines polls until cond holds of the number of goroutines.
func waitGoroutines(t *testing.T, what string, cond func(n int) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if cond(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d goroutines", what, n)
		}
		time.Sleep(5 * time.Millisecond) // polling, not synchronising
	}
}

// TestIdleSubscriberParks: a live subscriber with nothing to send has no
// goroutine of its own, only the WebSocket reader's; it wakes for the
// next message, for a burst, and for the end of the channel, and delivers
// each exactly once, in order.
func TestIdleSubscriberParks(t *testing.T) {
	ts := startTestServer(t, hub.Config{}, ServerConfig{PingInterval: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := ts.hub.Create(ctx, "p", nil, 0); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	const n = 40
	conns := make([]*websocket.Conn, n)
	// The test reads each connection in turn, from this goroutine: the
	// clients add no goroutine.
	read := func(c *websocket.Conn) wire.Frame {
		t.Helper()
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f, err := wire.DecodeFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for i := range conns {
		c, _, err := websocket.Dial(ctx, strings.Replace(ts.url, "http://", "ws://", 1)+"/ws?id=p", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		conns[i] = c
		if f := read(c); f.Type != wire.FrameHello {
			t.Fatalf("first frame %+v", f)
		}
		if f := read(c); f.Type != wire.FrameLive {
			t.Fatalf("second frame %+v", f)
		}
	}
	// Each connection has its reader; the streams park.
	waitGoroutines(t, "parked", func(g int) bool { return g-base <= n+n/4 })

	expect := func(from, to int64) {
		t.Helper()
		for i, c := range conns {
			next := from
			for next <= to {
				f := read(c)
				if f.Type != wire.FrameMessage && f.Type != wire.FrameBatch {
					t.Fatalf("conn %d: %+v, want messages %d..%d", i, f, next, to)
				}
				for j, d := range f.Data {
					if want := fmt.Sprintf("m%d", next); f.Seq+int64(j) != next || d != want {
						t.Fatalf("conn %d: seq %d %q, want %d %q", i, f.Seq+int64(j), d, next, want)
					}
					next++
				}
			}
		}
	}
	appendN := func(from, to int64) {
		t.Helper()
		for seq := from; seq <= to; seq++ {
			if got, err := ts.hub.Append(ctx, "p", fmt.Appendf(nil, "m%d", seq), false); err != nil || got != seq {
				t.Fatalf("append %d: %d, %v", seq, got, err)
			}
		}
	}
	appendN(1, 1)
	expect(1, 1)
	waitGoroutines(t, "parked again", func(g int) bool { return g-base <= n+n/4 })
	appendN(2, 50)
	expect(2, 50)
	if _, err := ts.hub.Close(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		if f := read(c); f.Type != wire.FrameEnd || f.Seq != 50 {
			t.Fatalf("conn %d: %+v, want end at 50", i, f)
		}
		if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
			t.Fatalf("conn %d: %v, want a normal close", i, err)
		}
	}
	waitGoroutines(t, "all gone", func(g int) bool { return g <= base+2 })
}
