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
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wire"
)

// post sends a POST and returns the status and the body.
func post(t testing.TB, u, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(u, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read body: %v", u, err)
	}
	return resp.StatusCode, string(b)
}

type httpResult struct {
	status int
	body   string
}

// receive waits for an answer that must come, failing after 10s.
func receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	select {
	case v := <-ch:
		return v
	case <-timeout.C:
		t.Fatalf("no %s within 10s", what)
	}
	var zero T
	return zero
}

// TestCloseEmptyChannelWaitsUntilDurable: closing a channel with no
// messages is answered only once the close is durable, and no append is
// accepted after it, not even by a request racing with the close. The
// actor used to record its in-flight batch by its last seq, which is 0 for
// an empty channel, the same as "nothing in flight": it answered the close
// and exited while the close batch was still with the writer, and the next
// request took the channel over as epoch 2 and accepted appends.
func TestCloseEmptyChannelWaitsUntilDurable(t *testing.T) {
	ts := startTestServer(t, HubConfig{}, ServerConfig{})
	ctx := context.Background()
	if _, err := ts.hub.Create(ctx, "empty", nil, 0); err != nil {
		t.Fatal(err)
	}
	_, reg, err := ts.hub.subscribe(ctx, "empty", 0, true)
	if err != nil || reg == nil {
		t.Fatalf("subscribe: %v", err)
	}
	ts.gate.hold() // the database is slow
	closed := make(chan httpResult, 1)
	go func() {
		resp, err := http.Post(ts.url+"/channels/empty/close", "", nil)
		if err != nil {
			closed <- httpResult{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		closed <- httpResult{resp.StatusCode, string(b)}
	}()
	b := ts.gate.next(t, "empty")
	if !b.Close || len(b.Messages) != 0 {
		t.Fatalf("batch %+v, want an empty close batch", b)
	}

	// The close batch is with the writer, not durable yet.
	if st, body := post(t, ts.url+"/channels/empty/messages", "late"); st != http.StatusConflict {
		t.Fatalf("append while the close is being persisted: %d %s, want 409", st, body)
	}
	select {
	case r := <-closed:
		t.Fatalf("close answered %d %s before the close was durable", r.status, r.body)
	default:
	}
	select {
	case <-reg.s.queue:
		t.Fatalf("the subscriber was ended (reason %d) before the close was durable", reg.s.reason)
	default:
	}

	ts.gate.commit(b)
	r := receive(t, closed, "answer to the close")
	if r.status != http.StatusOK {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	var resp struct {
		LastSeq *int64 `json:"last_seq"`
	}
	if err := json.Unmarshal([]byte(r.body), &resp); err != nil || resp.LastSeq == nil || *resp.LastSeq != 0 {
		t.Fatalf("close answered %s, want {\"last_seq\":0}", r.body)
	}
	if _, ok := <-reg.s.queue; ok || reg.s.reason != reasonEnded || reg.s.endSeq != 0 {
		t.Fatalf("subscriber: reason %d end %d, want ended at 0", reg.s.reason, reg.s.endSeq)
	}
	// Requests right after the acknowledged close.
	if st, body := post(t, ts.url+"/channels/empty/messages", "later"); st != http.StatusConflict {
		t.Fatalf("append after the close: %d %s, want 409", st, body)
	}
	if st, body := post(t, ts.url+"/channels/empty/close", ""); st != http.StatusConflict {
		t.Fatalf("second close: %d %s, want 409", st, body)
	}
	rec, err := ts.store.Channel(ctx, "empty")
	if err != nil || rec.Open() || rec.LastSeq != 0 || rec.Epoch != 1 {
		t.Fatalf("stored channel %+v (%v), want closed at seq 0 in epoch 1", rec, err)
	}
}

// TestChannelNotFoundByWriter: when the writer reports that a channel's
// row is gone (deleted under the server), that channel fails alone: its
// subscribers get "internal" and close 4500, the server goes on, and the
// channel is then unknown. It used to be taken for a shutdown: subscribers
// got 1001 "server is shutting down" and would reconnect in vain.
func TestChannelNotFoundByWriter(t *testing.T) {
	ts := startTestServer(t, HubConfig{}, ServerConfig{})
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
	ts.store.mu.Lock()
	delete(ts.store.channels, "gone")
	delete(ts.store.msgs, "gone")
	ts.store.mu.Unlock()
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
	ts := startTestServer(t, HubConfig{}, ServerConfig{})
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
	if n := testutil.ToFloat64(ts.hub.metrics.failures); n != 1 {
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

// TestGeneratorChannelRefusesProducers: producers get 409 with a JSON
// error when they append to or close a channel written by its generator,
// and the generator's stream stays exactly its lines. An append used to be
// accepted and shift every later line against its seq (and a restarted
// generator, which goes on from the last seq, then skipped lines); a close
// cut the generator short.
func TestGeneratorChannelRefusesProducers(t *testing.T) {
	ts := startTestServer(t, HubConfig{}, ServerConfig{})
	ctx := context.Background()
	const lines = 3
	// The generator waits for one subscriber: nothing is written until then.
	if _, err := ts.hub.Create(ctx, "gen", &persist.Generator{Freq: 1000, Max: lines}, 1); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/channels/gen/messages", "/channels/gen/messages?wait=persisted", "/channels/gen/close"} {
		st, body := post(t, ts.url+path, "not a generator line")
		var e struct{ Error string }
		if st != http.StatusConflict || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "generator") {
			t.Errorf("POST %s: %d %s, want 409 with a JSON error naming the generator", path, st, body)
		}
	}
	c := dialTest(t, ts.url, "gen")
	c.expect(t, wire.FrameHello, 0)
	c.expect(t, wire.FrameLive, 0)
	var data []string
	for {
		f := c.next(t)
		if f.Type == wire.FrameEnd {
			if f.Seq != lines {
				t.Fatalf("end at %d, want %d", f.Seq, lines)
			}
			break
		}
		if f.Type != wire.FrameMessage && f.Type != wire.FrameBatch || f.Seq != int64(len(data))+1 {
			t.Fatalf("got %s frame at seq %d after %d messages", f.Type, f.Seq, len(data))
		}
		data = append(data, f.Data...)
	}
	for i, d := range data {
		if want := fmt.Sprintf("%d: gen\n", i+1); d != want {
			t.Errorf("seq %d = %q, want %q", i+1, d, want)
		}
	}
}
