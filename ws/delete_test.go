package ws_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wire"
	"github.com/messages-server/messages/ws/wstest"
)

// TestDeleteChannel deletes an open channel with history, on each
// backend, while a WebSocket subscriber, a text follower and an append
// waiting for persistence are attached to it: the subscriber gets
// "deleted" and close 4410, the follower's response is cut, the append
// gets 410, nothing of the channel is left, another channel is untouched,
// and the id can be created again at a higher epoch, which a client of the
// old channel cannot mistake for it.
func TestDeleteChannel(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			flaky := &flakyStore{}
			srv := wstest.Start(t, wstest.Options{PersistInterval: 5 * time.Millisecond, Backend: backend,
				BatchWriter: func(w persist.BatchWriter) persist.BatchWriter { flaky.dst = w; return flaky }})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			createChannel(t, srv.URL, "gone")
			createChannel(t, srv.URL, "kept")
			for _, m := range []string{"a", "b", "c"} {
				appendMsg(t, srv.URL, "gone", m)
			}
			appendMsg(t, srv.URL, "kept", "k")
			st, b := do(t, "POST", srv.URL+"/channels/gone/messages?wait=persisted", "text/plain", []byte("d"))
			if st != http.StatusOK {
				t.Fatalf("append: %d %s", st, b)
			}
			info := decodeJSON[struct{ Epoch string }](t, getOK(t, srv.URL+"/channels/gone"))

			sub := dialRaw(ctx, t, srv.URL, "gone", 0, "")
			if err := readUntilLive(ctx, sub); err != nil {
				t.Fatal(err)
			}
			follower := followText(ctx, t, srv.URL, "gone")
			// An append that waits for persistence while the store is down.
			flaky.down.Store(true)
			pending := make(chan int, 1)
			go func() {
				resp, err := http.Post(srv.URL+"/channels/gone/messages?wait=persisted", "text/plain", strings.NewReader("e"))
				if err != nil {
					pending <- 0
					return
				}
				resp.Body.Close()
				pending <- resp.StatusCode
			}()
			if err := sub.readUntil(ctx, 5); err != nil {
				t.Fatal(err)
			}

			if st, b := do(t, "DELETE", srv.URL+"/channels/gone", "", nil); st != http.StatusNoContent {
				t.Fatalf("DELETE: %d %s, want 204", st, b)
			}
			if st := within(t, pending, "the pending append"); st != http.StatusGone {
				t.Errorf("pending append: %d, want 410", st)
			}
			f, err := sub.next(ctx)
			if err != nil || f.Type != wire.FrameError || f.Code != wire.CodeDeleted {
				t.Fatalf("subscriber got %+v %v, want an error frame with code %q", f, err, wire.CodeDeleted)
			}
			if _, _, err := sub.conn.Read(ctx); websocket.CloseStatus(err) != wire.CloseDeleted {
				t.Fatalf("subscriber closed with %v, want %d", err, wire.CloseDeleted)
			}
			if end := within(t, follower, "the text follower's end"); end != "deleted" {
				t.Errorf("text follower's response ended with %q, want a complete response with trailer Stream-End: deleted", end)
			}
			flaky.down.Store(false)

			for _, path := range []string{"/channels/gone", "/channels/gone/messages"} {
				if st, b := do(t, "GET", srv.URL+path, "", nil); st != http.StatusNotFound {
					t.Errorf("GET %s after delete: %d %s, want 404", path, st, b)
				}
			}
			if st, _ := do(t, "DELETE", srv.URL+"/channels/gone", "", nil); st != http.StatusNotFound {
				t.Errorf("second DELETE: %d, want 404", st)
			}
			if ms, err := srv.Store.Messages(ctx, "gone", 0, 10); err != nil || len(ms) != 0 {
				t.Errorf("store has %d messages of the deleted channel (%v)", len(ms), err)
			}
			if got := historyData(t, srv.URL, "kept"); !slices.Equal(got, []string{"k"}) {
				t.Errorf("history of the other channel = %q, want [k]", got)
			}
			if got := metricValue(t, srv, "messages_channels_deleted_total"); got != 1 {
				t.Errorf("messages_channels_deleted_total = %v, want 1", got)
			}
			wstest.WaitFor(t, 10*time.Second, "the deleted channel's actor to stop", func() bool {
				return metricValue(t, srv, "messages_channels_open") == 1
			})

			// Created again: a new channel above the old epoch; a client of
			// the old one resuming with its epoch is told to start again.
			createChannel(t, srv.URL, "gone")
			again := decodeJSON[struct{ Epoch string }](t, getOK(t, srv.URL+"/channels/gone"))
			oldEpoch, _ := strconv.ParseInt(info.Epoch, 10, 64)
			if e, _ := strconv.ParseInt(again.Epoch, 10, 64); e <= oldEpoch {
				t.Fatalf("re-created channel at epoch %s, want above %s", again.Epoch, info.Epoch)
			}
			appendMsg(t, srv.URL, "gone", "new")
			old := dialRaw(ctx, t, srv.URL, "gone", 1, info.Epoch)
			if f, err := old.next(ctx); err != nil || f.Code != wire.CodeReset || f.LastSeq != 0 {
				t.Fatalf("resume with the old epoch: %+v %v, want reset at 0", f, err)
			}
			if got := historyData(t, srv.URL, "gone"); !slices.Equal(got, []string{"new"}) {
				t.Errorf("history of the re-created channel = %q, want [new]", got)
			}
		})
	}
}

// TestDeleteGeneratorChannel deletes a channel whose generator is running:
// the generator stops with its actor and the channel stays deleted.
func TestDeleteGeneratorChannel(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{PersistInterval: 5 * time.Millisecond})
	createGenerator(t, srv.URL, "gen", 200, 1_000_000)
	wstest.WaitFor(t, 10*time.Second, "generated lines", func() bool {
		return metricValue(t, srv, "messages_appended_total") > 10
	})
	if st, b := do(t, "DELETE", srv.URL+"/channels/gen", "", nil); st != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", st, b)
	}
	if got := metricValue(t, srv, "messages_channels_open"); got != 0 {
		t.Fatalf("messages_channels_open = %v after the delete, want 0", got)
	}
	if st, _ := do(t, "GET", srv.URL+"/channels/gen", "", nil); st != http.StatusNotFound {
		t.Fatalf("GET after delete: %d, want 404", st)
	}
	if st, _ := do(t, "DELETE", srv.URL+"/channels/nope", "", nil); st != http.StatusNotFound {
		t.Fatalf("DELETE of an unknown channel: %d, want 404", st)
	}
	if st, _ := do(t, "DELETE", srv.URL+"/channels/bad%20id", "", nil); st != http.StatusBadRequest {
		t.Fatalf("DELETE of an invalid id: %d, want 400", st)
	}
}

// getOK gets u and returns the body of its 200 answer.
func getOK(t testing.TB, u string) []byte {
	t.Helper()
	st, b := do(t, "GET", u, "", nil)
	if st != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, st, b)
	}
	return b
}

// historyData returns the data of the first messages of channel id, read
// with GET /channels/{id}/messages.
func historyData(t testing.TB, base, id string) []string {
	t.Helper()
	page := decodeJSON[struct{ Messages []struct{ Data string } }](t, getOK(t, base+"/channels/"+id+"/messages"))
	var out []string
	for _, m := range page.Messages {
		out = append(out, m.Data)
	}
	return out
}

// followText streams GET /?id=id and sends on the channel returned, once
// it ends, its trailer Stream-End, or the error that cut it short.
func followText(ctx context.Context, t testing.TB, base, id string) <-chan string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/?id="+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /?id=%s: %d", id, resp.StatusCode)
	}
	done := make(chan string, 1)
	go func() {
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			done <- "error: " + err.Error()
			return
		}
		done <- resp.Trailer.Get("Stream-End")
	}()
	return done
}

// within returns what ch gives, failing t if it gives nothing within 10s.
func within[T any](t testing.TB, ch <-chan T, what string) T {
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

// oldBatch fails every write while down, as an unreachable database does,
// and closes written once a write of the message "old" reached the store.
type oldBatch struct {
	dst      persist.BatchWriter
	down     atomic.Bool
	failures atomic.Int64
	written  chan struct{}
	once     sync.Once
}

func (o *oldBatch) WriteBatches(ctx context.Context, bs []*persist.Batch) error {
	if o.down.Load() {
		o.failures.Add(1)
		return errors.New("injected: database unreachable")
	}
	err := o.dst.WriteBatches(ctx, bs)
	for _, b := range bs {
		for _, m := range b.Messages {
			if string(m.Data) == "old" {
				o.once.Do(func() { close(o.written) })
			}
		}
	}
	return err
}

// TestDeleteThenCreateWithBatchInFlight deletes a channel whose last batch
// the writer is still retrying (the database is failing its writes), then
// creates the id again: the old batch must not land in the new channel,
// so the create waits until the writer is done with it.
func TestDeleteThenCreateWithBatchInFlight(t *testing.T) {
	flaky := &oldBatch{written: make(chan struct{})}
	srv := wstest.Start(t, wstest.Options{PersistInterval: 5 * time.Millisecond,
		BatchWriter: func(w persist.BatchWriter) persist.BatchWriter { flaky.dst = w; return flaky }})
	createChannel(t, srv.URL, "again")
	flaky.down.Store(true)
	appendMsg(t, srv.URL, "again", "old")
	wstest.WaitFor(t, 10*time.Second, "the writer retrying the batch", func() bool { return flaky.failures.Load() > 0 })
	if st, b := do(t, "DELETE", srv.URL+"/channels/again", "", nil); st != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", st, b)
	}
	created := make(chan int, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/channels", "application/json", strings.NewReader(`{"id":"again"}`))
		if err != nil {
			created <- 0
			return
		}
		resp.Body.Close()
		created <- resp.StatusCode
	}()
	// Without the wait the create is done at once, before the batch is
	// retried: give it the time to be.
	st := 0
	select {
	case st = <-created:
	case <-time.After(500 * time.Millisecond):
	}
	flaky.down.Store(false)
	if st == 0 {
		st = within(t, created, "the create")
	}
	if st != http.StatusCreated {
		t.Fatalf("create again: %d", st)
	}
	within(t, flaky.written, "the old batch written again")
	st, b := do(t, "POST", srv.URL+"/channels/again/messages?wait=persisted", "text/plain", []byte("new"))
	if st != http.StatusOK {
		t.Fatalf("append to the new channel: %d %s", st, b)
	}
	ms, err := srv.Store.Messages(context.Background(), "again", 0, 10)
	if err != nil || len(ms) != 1 || string(ms[0].Data) != "new" {
		var got []string
		for _, m := range ms {
			got = append(got, string(m.Data))
		}
		t.Fatalf("the new channel holds %q (%v), want [new]", got, err)
	}
}
