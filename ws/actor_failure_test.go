package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wire"
)

// TestChannelNotFoundByWriter: when the writer reports that a channel's
// row is gone (deleted under the server), that channel fails alone: its
// subscribers get "internal" and close 4500, the server goes on, and the
// channel is then unknown. It used to be taken for a shutdown: subscribers
// got 1001 "server is shutting down" and would reconnect in vain.
func TestChannelNotFoundByWriter(t *testing.T) {
	ts := startTestServer(t, hub.Config{}, ServerConfig{})
	ctx := context.Background()
	for _, id := range []string{"gone", "other"} {
		if _, err := ts.hub.Create(ctx, id, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	c := dialTest(t, ts.url, "gone")
	c.expect(t, wire.FrameHello, 0)
	c.expect(t, wire.FrameLive, 0)
	ts.gate.hold()
	if st, body := post(t, ts.url+"/channels/gone/messages", "one"); st != http.StatusOK {
		t.Fatalf("append: %d %s", st, body)
	}
	c.expect(t, wire.FrameMessage, 1)
	b := ts.gate.next(t, "gone")
	ts.gate.open()
	if err := ts.store.DeleteChannel(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	b.Done(fmt.Errorf("persist: write batch: %w", persist.ErrNotFound))

	f := c.next(t)
	if f.Type != wire.FrameError || f.Code != wire.CodeInternal {
		t.Fatalf("got %s frame %q %q, want an error frame with code %q", f.Type, f.Code, f.Message, wire.CodeInternal)
	}
	var ce websocket.CloseError
	if err := c.closed(t); !errors.As(err, &ce) || ce.Code != wire.CloseInternal {
		t.Fatalf("closed with %v, want %d", err, wire.CloseInternal)
	}
	// The server goes on: other channels work, this one is unknown now.
	if st, body := post(t, ts.url+"/channels/other/messages", "fine"); st != http.StatusOK {
		t.Fatalf("append to another channel: %d %s", st, body)
	}
	if st, body := post(t, ts.url+"/channels/gone/messages", "two"); st != http.StatusNotFound {
		t.Fatalf("append to the deleted channel: %d %s, want 404", st, body)
	}
}

// TestPermanentWriteFailure: when the writer reports that a channel's
// batch failed for good (an error other than its own shutdown), the
// channel fails alone and says so: its subscribers get "internal" and
// close 4500, a producer waiting for persistence gets 500 with a JSON
// error, the failure is counted, and the channel is taken over afresh from
// its durable prefix by the next request (a new epoch, as after a crash).
// It used to be treated as a shutdown: 1001 and 503 "shutting down".
func TestPermanentWriteFailure(t *testing.T) {
	ts := startTestServer(t, hub.Config{}, ServerConfig{})
	ctx := context.Background()
	for _, id := range []string{"bad", "fine"} {
		if _, err := ts.hub.Create(ctx, id, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	c := dialTest(t, ts.url, "bad")
	c.expect(t, wire.FrameHello, 0)
	c.expect(t, wire.FrameLive, 0)
	if st, body := post(t, ts.url+"/channels/bad/messages?wait=persisted", "one"); st != http.StatusOK {
		t.Fatalf("append: %d %s", st, body)
	}
	c.expect(t, wire.FrameMessage, 1)

	ts.gate.hold()
	waiting := make(chan httpResult, 1)
	go func() {
		resp, err := http.Post(ts.url+"/channels/bad/messages?wait=persisted", "text/plain", strings.NewReader("two"))
		if err != nil {
			waiting <- httpResult{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		waiting <- httpResult{resp.StatusCode, string(b)}
	}()
	b := ts.gate.next(t, "bad")
	c.expect(t, wire.FrameMessage, 2)
	ts.gate.open()
	b.Done(errors.New("persist: write batch: ERROR: invalid byte sequence for encoding \"UTF8\": 0x00 (SQLSTATE 22021)"))

	r := receive(t, waiting, "answer to the waiting append")
	var body struct{ Error string }
	if r.status != http.StatusInternalServerError || json.Unmarshal([]byte(r.body), &body) != nil ||
		!strings.Contains(body.Error, "failed") {
		t.Fatalf("waiting append: %d %s, want 500 with a JSON error saying the channel failed", r.status, r.body)
	}
	f := c.next(t)
	if f.Type != wire.FrameError || f.Code != wire.CodeInternal {
		t.Fatalf("got %s frame %q %q, want an error frame with code %q", f.Type, f.Code, f.Message, wire.CodeInternal)
	}
	var ce websocket.CloseError
	if err := c.closed(t); !errors.As(err, &ce) || ce.Code != wire.CloseInternal {
		t.Fatalf("closed with %v, want %d", err, wire.CloseInternal)
	}
	if n := gathered(t, ts.reg, "messages_channel_failures_total"); n != 1 {
		t.Errorf("channel failures counted: %v, want 1", n)
	}

	// Other channels never noticed; the failed one goes on from what is
	// durable, in a new epoch.
	if st, body := post(t, ts.url+"/channels/fine/messages", "ok"); st != http.StatusOK {
		t.Fatalf("append to another channel: %d %s", st, body)
	}
	st, resp := post(t, ts.url+"/channels/bad/messages?wait=persisted", "three")
	if st != http.StatusOK || resp != "{\"seq\":2}\n" {
		t.Fatalf("append after the failure: %d %s, want seq 2", st, resp)
	}
	info, err := ts.hub.Info(ctx, "bad")
	if err != nil || info.Epoch != "2" || info.PersistedSeq != 2 {
		t.Fatalf("after the failure: %+v %v, want epoch 2 persisted to 2", info, err)
	}
}
