package ws_test

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/ws/wire"
	"github.com/messages-server/messages/ws/wstest"
)

// TestHistoryCacheAfterRestart: many WebSocket readers join a closed
// channel at once after a restart, so that the whole history comes from the
// store: each page is read once, and every reader gets the same bytes, the
// channel's exact content; a text reader and a resume inside a page get
// theirs too. On every storage backend.
func TestHistoryCacheAfterRestart(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			const id, n = "hc", 2500 // pages of 1000: 1..1000, 1001..2000, 2001..2500
			srv := wstest.Start(t, wstest.Options{Backend: backend})
			createGenerator(t, srv.URL, id, 100_000, n)
			if err := dialRaw(ctx, t, srv.URL, id, 0, "").readToEnd(ctx); err != nil {
				t.Fatal(err)
			}
			srv.Close()
			srv2 := wstest.Start(t, wstest.Options{DatabaseURL: srv.DatabaseURL})

			const readers = 40
			streams := make([][]byte, readers)
			errs := make([]error, readers)
			var wg sync.WaitGroup
			for i := range readers {
				wg.Go(func() { streams[i], errs[i] = readFrames(ctx, wsURL(srv2.URL, id, 0, "")) })
			}
			wg.Wait()
			for i := range readers {
				if errs[i] != nil {
					t.Fatalf("reader %d: %v", i, errs[i])
				}
				if !bytes.Equal(streams[i], streams[0]) {
					t.Fatalf("reader %d got other bytes than reader 0", i)
				}
			}
			if got, want := streamContent(t, streams[0], 1), generatorContent(id, n); got != want {
				t.Fatalf("stream differs from the channel: %d bytes, want %d", len(got), len(want))
			}
			if m := metricValue(t, srv2, "messages_history_cache_misses_total"); m != 3 {
				t.Errorf("%v history pages read from the store, want 3", m)
			}
			if b := metricValue(t, srv2, "messages_history_cache_bytes"); b <= 0 || int64(b) != srv2.Hub.HistoryCacheBytes() {
				t.Errorf("cache bytes gauge %v, HistoryCacheBytes %d", b, srv2.Hub.HistoryCacheBytes())
			}

			resumed, err := readFrames(ctx, wsURL(srv2.URL, id, 1500, ""))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := streamContent(t, resumed, 1501), generatorContent(id, n)[len(generatorContent(id, 1500)):]; got != want {
				t.Fatalf("resume from 1500 got %d bytes, want %d", len(got), len(want))
			}

			st, body := do(t, "GET", srv2.URL+"/?id="+id, "", nil)
			if st != http.StatusOK || string(body) != generatorContent(id, n) {
				t.Fatalf("text stream: %d, %d bytes", st, len(body))
			}
		})
	}
}

// readFrames reads a subscription to its normal close and returns its
// frames after the hello, each followed by a newline.
func readFrames(ctx context.Context, u string) ([]byte, error) {
	c, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		return nil, err
	}
	defer c.CloseNow()
	c.SetReadLimit(16 << 20)
	var out []byte
	for first := true; ; first = false {
		_, b, err := c.Read(ctx)
		if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if !first {
			out = append(append(out, b...), '\n')
		}
	}
}

// streamContent decodes frames as readFrames returns them, checks their
// seqs are contiguous from seq, and returns the data.
func streamContent(t *testing.T, frames []byte, seq int64) string {
	t.Helper()
	var out []byte
	for _, b := range bytes.Split(bytes.TrimSuffix(frames, []byte("\n")), []byte("\n")) {
		f, err := wire.DecodeFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		switch f.Type {
		case wire.FrameMessage, wire.FrameBatch:
			if f.Seq != seq {
				t.Fatalf("frame at seq %d, want %d", f.Seq, seq)
			}
			seq += int64(len(f.Data))
			for _, d := range f.Data {
				out = append(out, d...)
			}
		case wire.FrameEnd:
			if f.Seq != seq-1 {
				t.Fatalf("end at %d after %d", f.Seq, seq-1)
			}
		default:
			t.Fatalf("unexpected frame %s", b)
		}
	}
	return string(out)
}

// TestHistoryCacheDelete: deleting a channel drops its cached pages and
// what the cache knew of it: readers of the id get not_found, and once the
// id is created again, the new channel's content, never the old one's.
func TestHistoryCacheDelete(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const id = "dc"
	srv := wstest.Start(t, wstest.Options{})
	createGenerator(t, srv.URL, id, 100_000, 1500)
	if err := dialRaw(ctx, t, srv.URL, id, 0, "").readToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second reads the cache only
		frames, err := readFrames(ctx, wsURL(srv.URL, id, 0, ""))
		if err != nil || streamContent(t, frames, 1) != generatorContent(id, 1500) {
			t.Fatalf("before the delete: %v", err)
		}
	}
	if srv.Hub.HistoryCacheBytes() == 0 {
		t.Fatal("nothing cached")
	}
	if st, b := do(t, "DELETE", srv.URL+"/channels/"+id, "", nil); st != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", st, b)
	}
	if n := srv.Hub.HistoryCacheBytes(); n != 0 {
		t.Errorf("%d bytes still cached after the delete", n)
	}
	gone := dialRaw(ctx, t, srv.URL, id, 0, "")
	if f, err := gone.next(ctx); err != nil || f.Type != wire.FrameError || f.Code != wire.CodeNotFound {
		t.Fatalf("reader of the deleted channel: %+v, %v; want a not_found error", f, err)
	}

	createChannel(t, srv.URL, id)
	appendMsg(t, srv.URL, id, "new")
	again := dialRaw(ctx, t, srv.URL, id, 0, "")
	if err := again.readUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !again.hello.Open || again.hello.LastSeq != 1 || len(again.data) != 1 || again.data[0] != "new" {
		t.Fatalf("the channel created again: hello %+v, data %q", again.hello, again.data)
	}
}
