package ws_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/durable"
	"github.com/messages-server/messages/ws/wire"
	"github.com/messages-server/messages/ws/wstest"
)

// TestDurableStreamIsChannel: a stream appended through Durable Streams and
// through the channels API is one channel: a WebSocket subscriber and a
// Durable Streams reader see the same messages, with the same seqs, on both
// backends; binary data travels base64-encoded in WebSocket frames.
func TestDurableStreamIsChannel(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, wstest.Options{Backend: backend, LongPollTimeout: 5 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			stream := srv.URL + "/v1/stream/"

			// Text: one append through each API.
			if r := wstest.Do(t, "PUT", stream+"text", nil, "Content-Type", "text/plain"); r.StatusCode != http.StatusCreated {
				t.Fatalf("PUT: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			sub := dialRaw(ctx, t, srv.URL, "text", 0, "")
			if r := wstest.Do(t, "POST", stream+"text", []byte("a\n"), "Content-Type", "text/plain"); r.StatusCode != http.StatusNoContent {
				t.Fatalf("POST: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			if seq := appendMsg(t, srv.URL, "text", "b\n"); seq != 2 {
				t.Fatalf("channels API append got seq %d, want 2", seq)
			}
			if err := sub.readUntil(ctx, 2); err != nil {
				t.Fatal(err)
			}
			if got := sub.data; len(got) != 2 || got[0] != "a\n" || got[1] != "b\n" {
				t.Fatalf("WebSocket got %q", got)
			}
			r := wstest.Do(t, "GET", stream+"text?offset=-1", nil)
			if body := wstest.ReadAll(t, r); string(body) != "a\nb\n" || r.Header.Get("Stream-Next-Offset") != "0000000000000001_0000000000000002" {
				t.Fatalf("Durable Streams read: %q at %s", body, r.Header.Get("Stream-Next-Offset"))
			}

			// A long-poll at the tail wakes on an append through the
			// channels API.
			done := make(chan *http.Response, 1)
			go func() {
				done <- wstest.Do(t, "GET", stream+"text?offset=0000000000000001_0000000000000002&live=long-poll", nil)
			}()
			wstest.WaitFor(t, 10*time.Second, "the long-poll to register", func() bool {
				info, err := srv.Hub.Info(ctx, "text")
				return err == nil && info.Subscribers == 2
			})
			appendMsg(t, srv.URL, "text", "c\n")
			if r := <-done; r.StatusCode != http.StatusOK || string(wstest.ReadAll(t, r)) != "c\n" {
				t.Fatalf("long-poll: %d", r.StatusCode)
			}

			// Binary: bytes that are not UTF-8, through both APIs.
			if r := wstest.Do(t, "PUT", stream+"bin", []byte{0, 0xff}, "Content-Type", "application/octet-stream"); r.StatusCode != http.StatusCreated {
				t.Fatalf("PUT bin: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			if st, b := do(t, "POST", srv.URL+"/channels/bin/messages", "application/octet-stream", []byte{0xfe, 0x80}); st != http.StatusOK {
				t.Fatalf("channels API binary append: %d %s", st, b)
			}
			bsub := dialRaw(ctx, t, srv.URL, "bin", 0, "")
			if err := bsub.readUntil(ctx, 2); err != nil {
				t.Fatal(err)
			}
			if bsub.hello.ContentType != "application/octet-stream" || bsub.data[0] != "\x00\xff" || bsub.data[1] != "\xfe\x80" {
				t.Fatalf("WebSocket binary: hello %+v, data %q", bsub.hello, bsub.data)
			}
			r = wstest.Do(t, "GET", stream+"bin", nil)
			if body := wstest.ReadAll(t, r); !bytes.Equal(body, []byte{0, 0xff, 0xfe, 0x80}) {
				t.Fatalf("Durable Streams binary read: %x", body)
			}
			st, b := do(t, "GET", srv.URL+"/channels/bin/messages?from=0", "", nil)
			h := decodeJSON[struct {
				Encoding string
				Messages []struct{ Data string }
			}](t, b)
			if st != http.StatusOK || h.Encoding != wire.EncodingBase64 || len(h.Messages) != 2 ||
				h.Messages[1].Data != base64.StdEncoding.EncodeToString([]byte{0xfe, 0x80}) {
				t.Fatalf("history of a binary channel: %d %s", st, b)
			}
		})
	}
}

// TestIdempotentProducerOnChannelsAPI: the channels API takes the Durable
// Streams producer headers, so a retried append is not duplicated.
func TestIdempotentProducerOnChannelsAPI(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	createChannel(t, srv.URL, "prod")
	u := srv.URL + "/channels/prod/messages"
	send := func(data, epoch, seq string) *http.Response {
		return wstest.Do(t, "POST", u, []byte(data), "Content-Type", "text/plain",
			"Producer-Id", "p1", "Producer-Epoch", epoch, "Producer-Seq", seq)
	}
	if r := send("one", "0", "0"); r.StatusCode != http.StatusOK || decodeJSON[struct{ Seq int64 }](t, wstest.ReadAll(t, r)).Seq != 1 {
		t.Fatalf("first append: %d", r.StatusCode)
	}
	// The producer's state was committed with the message.
	if st, err := srv.Store.Stream(context.Background(), "prod"); err != nil || len(st.Producers) != 1 ||
		st.Producers[0] != (persist.ProducerState{ID: "p1", Epoch: 0, Seq: 0}) {
		t.Fatalf("stored stream state after the first append: %+v %v", st, err)
	}
	if r := send("one", "0", "0"); r.StatusCode != http.StatusNoContent || r.Header.Get("Producer-Seq") != "0" {
		t.Fatalf("retry: %d, Producer-Seq %q; want 204, 0", r.StatusCode, r.Header.Get("Producer-Seq"))
	}
	if r := send("three", "0", "2"); r.StatusCode != http.StatusConflict || r.Header.Get("Producer-Expected-Seq") != "1" {
		t.Fatalf("gap: %d, expected %q", r.StatusCode, r.Header.Get("Producer-Expected-Seq"))
	}
	if r := send("two", "1", "0"); r.StatusCode != http.StatusOK {
		t.Fatalf("new epoch: %d", r.StatusCode)
	}
	if r := send("zombie", "0", "1"); r.StatusCode != http.StatusForbidden || r.Header.Get("Producer-Epoch") != "1" {
		t.Fatalf("stale epoch: %d, Producer-Epoch %q", r.StatusCode, r.Header.Get("Producer-Epoch"))
	}
	if r := wstest.Do(t, "POST", u, []byte("x"), "Producer-Id", "p1"); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("partial headers: %d", r.StatusCode)
	}
	st, b := do(t, "GET", u+"?from=0", "", nil)
	h := decodeJSON[struct{ Messages []struct{ Data string } }](t, b)
	if st != http.StatusOK || len(h.Messages) != 2 || h.Messages[0].Data != "one" || h.Messages[1].Data != "two" {
		t.Fatalf("history: %d %s", st, b)
	}
}

// TestDurableForkLifecycle: a fork starts with a copy of its source up to
// the fork point and is independent from then on; deleting a source with
// forks keeps it as deleted (410, name taken) until its last fork goes.
func TestDurableForkLifecycle(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite"})
	stream := srv.URL + "/v1/stream/"
	status := func(method, name string) int {
		return wstest.Do(t, method, stream+name, nil).StatusCode
	}
	r := wstest.Do(t, "PUT", stream+"src", []byte("hello"), "Content-Type", "text/plain")
	mid := r.Header.Get("Stream-Next-Offset")
	wstest.Do(t, "POST", stream+"src", []byte(" world"), "Content-Type", "text/plain")
	if r := wstest.Do(t, "PUT", stream+"fork", nil, "Stream-Forked-From", "/v1/stream/src",
		"Stream-Fork-Offset", mid, "Stream-Fork-Sub-Offset", "0"); r.StatusCode != http.StatusCreated ||
		r.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("fork: %d %s", r.StatusCode, r.Header.Get("Content-Type"))
	}
	if r := wstest.Do(t, "PUT", stream+"part", nil, "Stream-Forked-From", "/v1/stream/src",
		"Stream-Fork-Offset", mid, "Stream-Fork-Sub-Offset", "3"); r.StatusCode != http.StatusCreated {
		t.Fatalf("fork with a sub-offset: %d %s", r.StatusCode, wstest.ReadAll(t, r))
	}
	wstest.Do(t, "POST", stream+"fork", []byte("!"), "Content-Type", "text/plain")
	for name, want := range map[string]string{"src": "hello world", "fork": "hello!", "part": "hello wo"} {
		if got := string(wstest.ReadAll(t, wstest.Do(t, "GET", stream+name, nil))); got != want {
			t.Errorf("%s reads %q, want %q", name, got, want)
		}
	}
	if st := status("DELETE", "src"); st != http.StatusNoContent {
		t.Fatalf("delete src: %d", st)
	}
	if st := status("HEAD", "src"); st != http.StatusGone {
		t.Fatalf("HEAD of a deleted source with forks: %d, want 410", st)
	}
	if r := wstest.Do(t, "PUT", stream+"src", nil, "Content-Type", "text/plain"); r.StatusCode != http.StatusConflict {
		t.Fatalf("re-create a deleted source with forks: %d, want 409", r.StatusCode)
	}
	if got := string(wstest.ReadAll(t, wstest.Do(t, "GET", stream+"fork", nil))); got != "hello!" {
		t.Fatalf("fork after its source was deleted reads %q", got)
	}
	for _, name := range []string{"fork", "part"} {
		if st := status("DELETE", name); st != http.StatusNoContent {
			t.Fatalf("delete %s: %d", name, st)
		}
	}
	if st := status("HEAD", "src"); st != http.StatusNotFound {
		t.Fatalf("HEAD of the source once its forks are gone: %d, want 404", st)
	}
	if _, err := srv.Store.Channel(context.Background(), "src"); err == nil {
		t.Fatal("the source's channel is still stored")
	}
}

// TestDurableStateCacheBound: past the bound, stream states are dropped from
// memory and read again from the store, with nothing lost: producers are
// still recognised and Stream-Seq still enforced.
func TestDurableStateCacheBound(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite", MaxCachedStreams: 2})
	stream := srv.URL + "/v1/stream/"
	const n = 6
	name := func(i int) string { return stream + "cache-" + strconv.Itoa(i) }
	for i := range n {
		if r := wstest.Do(t, "PUT", name(i), nil, "Content-Type", "text/plain"); r.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %d: %d", i, r.StatusCode)
		}
		if r := wstest.Do(t, "POST", name(i), []byte("a"), "Content-Type", "text/plain", "Stream-Seq", "5",
			"Producer-Id", "p", "Producer-Epoch", "0", "Producer-Seq", "0"); r.StatusCode != http.StatusOK {
			t.Fatalf("POST %d: %d", i, r.StatusCode)
		}
	}
	if c := srv.Streams.Cached(); c > 2 {
		t.Fatalf("%d stream states cached, want at most 2", c)
	}
	for i := range n {
		if r := wstest.Do(t, "POST", name(i), []byte("a"), "Content-Type", "text/plain",
			"Producer-Id", "p", "Producer-Epoch", "0", "Producer-Seq", "0"); r.StatusCode != http.StatusNoContent {
			t.Fatalf("retry on %d after eviction: %d, want 204", i, r.StatusCode)
		}
		if r := wstest.Do(t, "POST", name(i), []byte("b"), "Content-Type", "text/plain", "Stream-Seq", "4"); r.StatusCode != http.StatusConflict {
			t.Fatalf("Stream-Seq regression on %d after eviction: %d, want 409", i, r.StatusCode)
		}
		if got := string(wstest.ReadAll(t, wstest.Do(t, "GET", name(i), nil))); got != "a" {
			t.Fatalf("stream %d reads %q, want %q", i, got, "a")
		}
	}
}

// TestDurableStreamsTokens: with tokens required, /v1/stream/ asks for the
// same rights as the channels API: publish to create and append, subscribe
// to read (also as ?token= on GET, for EventSource), subscribe on the
// source to fork, admin to delete. A malformed request gets its 400 first,
// whatever its token.
func TestDurableStreamsTokens(t *testing.T) {
	srv := startAuth(t, "sqlite", false, nil)
	tok := testTokens(t)
	u := srv.URL + "/v1/stream/room-1"
	ct := map[string]string{"Content-Type": "text/plain"}
	for _, c := range []struct {
		method, url, token, body string
		hdr                      map[string]string
		want                     int
	}{
		// Syntax comes before the token: 400, not 401.
		{"POST", u, "none", "b", map[string]string{"Content-Type": "text/plain", "Producer-Id": "p"}, http.StatusBadRequest},
		{"PUT", u, "none", "", map[string]string{"Content-Type": "text/plain", "Stream-TTL": "soon"}, http.StatusBadRequest},
		{"GET", u + "?offset=nonsense", "none", "", nil, http.StatusBadRequest},
		{"GET", u + "?offset=-1&live=sometimes", "none", "", nil, http.StatusBadRequest},
		{"HEAD", srv.URL + "/v1/stream/bad%20name", "none", "", nil, http.StatusBadRequest},
		{"PUT", u, "none", "", ct, http.StatusUnauthorized},
		{"PUT", u, "subscriber", "", ct, http.StatusForbidden},
		{"PUT", u, "publisher", "a", ct, http.StatusCreated},
		{"POST", u, "stranger", "b", ct, http.StatusForbidden},
		{"POST", u, "publisher", "b", ct, http.StatusNoContent},
		{"GET", u, "none", "", nil, http.StatusUnauthorized},
		{"GET", u, "publisher", "", nil, http.StatusForbidden},
		{"GET", u, "subscriber", "", nil, http.StatusOK},
		{"GET", u + "?offset=-1&live=sse&token=" + tok["subscriber"], "none", "", nil, http.StatusOK},
		{"HEAD", u, "subscriber", "", nil, http.StatusOK},
		{"PUT", srv.URL + "/v1/stream/room-2", "publisher", "", map[string]string{"Stream-Forked-From": "/v1/stream/room-1"}, http.StatusForbidden},
		{"DELETE", u, "publisher", "", nil, http.StatusForbidden},
		{"DELETE", u, "admin", "", nil, http.StatusNoContent},
	} {
		if c.method == "GET" && strings.Contains(c.url, "live=sse") {
			// An SSE response lasts: check its status only.
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, c.method, c.url, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != c.want {
				t.Errorf("SSE with ?token=: %v %v, want %d", resp, err, c.want)
			}
			if err == nil {
				resp.Body.Close()
			}
			cancel()
			continue
		}
		if got := request(t, c.method, c.url, tok[c.token], c.body, c.hdr); got.status != c.want {
			t.Errorf("%s %s as %s: %d %s, want %d", c.method, c.url, c.token, got.status, got.body, c.want)
		}
	}
}

// TestDurableLongFork: a fork of more messages than one actor request may
// carry is copied in chunks, whole and in order.
func TestDurableLongFork(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite"})
	stream := srv.URL + "/v1/stream/"
	const n = 10_000 + 7
	var b strings.Builder
	b.WriteByte('[')
	for i := 1; i <= 10_000; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i))
	}
	b.WriteByte(']')
	if r := wstest.Do(t, "PUT", stream+"long", []byte(b.String()), "Content-Type", "application/json"); r.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", r.StatusCode, wstest.ReadAll(t, r))
	}
	if r := wstest.Do(t, "POST", stream+"long", []byte("[10001,10002,10003,10004,10005,10006,10007]"),
		"Content-Type", "application/json"); r.StatusCode != http.StatusNoContent {
		t.Fatalf("POST: %d %s", r.StatusCode, wstest.ReadAll(t, r))
	}
	r := wstest.Do(t, "PUT", stream+"long-fork", nil, "Stream-Forked-From", "/v1/stream/long")
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("fork: %d %s", r.StatusCode, wstest.ReadAll(t, r))
	}
	if got, want := r.Header.Get("Stream-Next-Offset"), (durable.Pos{Epoch: 1, Seq: n}).String(); got != want {
		t.Fatalf("fork tail %s, want %s", got, want)
	}
	msgs, err := srv.Hub.History(context.Background(), "long-fork", n-8, 100)
	if err != nil || len(msgs) != 8 || string(msgs[0].Data) != "10000" || string(msgs[7].Data) != "10007" {
		t.Fatalf("the fork's last messages: %v %v", msgs, err)
	}
}

// TestDurableJSONBatchRun: a JSON batch is held as one run of messages
// (TestJSONBatchCost), and reads as its messages everywhere: a WebSocket
// subscriber live before it (the run is one entry of its queue, cut into
// frames), one that starts in the middle of it (the buffer's run sliced),
// a Durable Streams read, the history API, and the store, on both backends.
func TestDurableJSONBatchRun(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, wstest.Options{Backend: backend})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			stream := srv.URL + "/v1/stream/"
			if r := wstest.Do(t, "PUT", stream+"run", nil, "Content-Type", "application/json"); r.StatusCode != http.StatusCreated {
				t.Fatalf("PUT: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			const n = 3000 // past a subscriber's queue (64) and a frame (512)
			var body bytes.Buffer
			want := make([]string, n+1)
			body.WriteByte('[')
			for i := range n {
				if i > 0 {
					body.WriteString(", ")
				}
				want[i] = `{"i":` + strconv.Itoa(i+1) + `}`
				body.WriteString(`{ "i": ` + strconv.Itoa(i+1) + ` }`)
			}
			body.WriteByte(']')
			want[n] = `"after"`
			live := dialRaw(ctx, t, srv.URL, "run", 0, "")
			if _, err := live.next(ctx); err != nil { // hello
				t.Fatal(err)
			}
			if r := wstest.Do(t, "POST", stream+"run", body.Bytes(), "Content-Type", "application/json"); r.StatusCode != http.StatusNoContent {
				t.Fatalf("POST batch: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			if r := wstest.Do(t, "POST", stream+"run", []byte(`"after"`), "Content-Type", "application/json"); r.StatusCode != http.StatusNoContent {
				t.Fatalf("POST: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			check := func(who string, from int, got []string) {
				t.Helper()
				if len(got) != n+1-from {
					t.Fatalf("%s: %d messages after %d, want %d", who, len(got), from, n+1-from)
				}
				for i, d := range got {
					if d != want[from+i] {
						t.Fatalf("%s: seq %d = %q, want %q", who, from+i+1, d, want[from+i])
					}
				}
			}
			if err := live.readUntil(ctx, n+1); err != nil {
				t.Fatal(err)
			}
			check("live subscriber", 0, live.data)
			mid := dialRaw(ctx, t, srv.URL, "run", 1234, "")
			if err := mid.readUntil(ctx, n+1); err != nil {
				t.Fatal(err)
			}
			check("subscriber from 1234", 1234, mid.data)
			r := wstest.Do(t, "GET", stream+"run?offset=-1", nil)
			var read []json.RawMessage
			if err := json.Unmarshal(wstest.ReadAll(t, r), &read); err != nil {
				t.Fatal(err)
			}
			got := make([]string, len(read))
			for i, m := range read {
				got[i] = string(m)
			}
			check("Durable Streams read", 0, got)
			st, b := do(t, "GET", srv.URL+"/channels/run/messages?from=2990&limit=20", "", nil)
			if st != http.StatusOK {
				t.Fatalf("history: %d %s", st, b)
			}
			h := decodeJSON[struct {
				Messages []struct{ Data string }
			}](t, b)
			got = got[:0]
			for _, m := range h.Messages {
				got = append(got, m.Data)
			}
			check("history API", 2990, got)
			wstest.WaitFor(t, 10*time.Second, "the batch persisted", func() bool {
				ms, err := srv.Store.Messages(ctx, "run", 0, 2*n)
				return err == nil && len(ms) == n+1
			})
			ms, _ := srv.Store.Messages(ctx, "run", 0, 2*n)
			got = got[:0]
			for i, m := range ms {
				if m.Seq != int64(i+1) {
					t.Fatalf("stored seq %d at %d", m.Seq, i)
				}
				got = append(got, string(m.Data))
			}
			check("store", 0, got)
		})
	}
}
