package ws_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wstest"
)

// TestFencedActor: a node whose channel another node took over finds out
// at its next write. The fenced batch is not stored and not acknowledged
// as persisted, the actor takes no more appends, and its subscribers are
// closed with 1001 so that they resume elsewhere.
func TestFencedActor(t *testing.T) {
	a := wstest.Start(t, wstest.Options{Node: "a", Lease: 200 * time.Millisecond, PersistInterval: 5 * time.Millisecond})
	b, err := persist.Open(t.Context(), persist.Config{URL: a.DatabaseURL, Node: "b", Lease: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	createChannel(t, a.URL, "f")
	sub := dialRaw(ctx, t, a.URL, "f", 0, "")
	for _, m := range []string{"m1", "m2", "m3"} {
		if st, body := do(t, "POST", a.URL+"/channels/f/messages?wait=persisted", "text/plain", []byte(m)); st != http.StatusOK {
			t.Fatalf("append %s: %d %s", m, st, body)
		}
	}
	if err := sub.readUntil(ctx, 3); err != nil {
		t.Fatal(err)
	}

	// b takes the channel over once a's lease (never renewed) expires.
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec, err := b.OpenEpoch(ctx, "f")
		if err == nil {
			if rec.Epoch != 2 || rec.LastSeq != 3 {
				t.Fatalf("take-over by b: %+v", rec)
			}
			break
		}
		if !errors.Is(err, persist.ErrOwned) || time.Now().After(deadline) {
			t.Fatalf("take-over by b: %v", err)
		}
		wstest.WaitFor(t, time.Second, "a's lease to expire", func() bool {
			o, _ := errors.AsType[*persist.OwnedError](err)
			return time.Now().After(o.Expires)
		})
	}

	// a's actor still runs at epoch 1: the append is delivered, but its
	// batch is fenced, so it is never reported persisted.
	st, body := do(t, "POST", a.URL+"/channels/f/messages?wait=persisted", "text/plain", []byte("m4"))
	if st != http.StatusServiceUnavailable || !strings.Contains(string(body), "moved") {
		t.Fatalf("append fenced: %d %s, want 503 saying the channel moved", st, body)
	}
	if err := sub.readUntil(ctx, 4); err != nil {
		t.Fatal(err)
	}
	_, err = sub.next(ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("subscriber after the fence: %v, want close 1001", err)
	}
	// The next ones find the channel owned by b.
	for _, path := range []string{"/channels/f/messages", "/channels/f/close"} {
		if st, body := do(t, "POST", a.URL+path, "text/plain", []byte("m5")); st != http.StatusServiceUnavailable {
			t.Fatalf("POST %s after the fence: %d %s, want 503", path, st, body)
		}
	}
	stored, err := b.Messages(ctx, "f", 0, 10)
	if err != nil || len(stored) != 3 {
		t.Fatalf("stored: %d messages, %v; want the 3 persisted before the take-over", len(stored), err)
	}
	if n := metricValue(t, a, "messages_fenced_channels_total"); n != 1 {
		t.Fatalf("messages_fenced_channels_total = %v, want 1", n)
	}
	if n := metricValue(t, a, "messages_persist_failed_batches_total"); n != 1 {
		t.Fatalf("failed batches (fenced) = %v, want 1", n)
	}
}
