package ws

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/messages-server/messages/ws/hub"
)

// TestCloseEmptyChannelWaitsUntilDurable: closing a channel with no
// messages is answered only once the close is durable, and no append is
// accepted after it, not even by a request racing with the close. The
// actor used to record its in-flight batch by its last seq, which is 0 for
// an empty channel, the same as "nothing in flight": it answered the close
// and exited while the close batch was still with the writer, and the next
// request took the channel over as epoch 2 and accepted appends.
func TestCloseEmptyChannelWaitsUntilDurable(t *testing.T) {
	ts := startTestServer(t, hub.Config{}, ServerConfig{})
	ctx := context.Background()
	if _, err := ts.hub.Create(ctx, "empty", nil, 0); err != nil {
		t.Fatal(err)
	}
	_, reg, err := ts.hub.Watch(ctx, "empty", 0)
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
	case <-reg.Queue():
		t.Fatalf("the subscriber was ended before the close was durable")
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
	_, ok := <-reg.Queue()
	if end, ended := reg.Ended(); ok || !ended || end != 0 {
		t.Fatalf("subscriber: ended %v at %d, want ended at 0", ended, end)
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
