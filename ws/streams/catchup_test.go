package streams_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wstest"
)

// item is the JSON value the tests below append; Pad makes it larger.
type item struct {
	N   int    `json:"n"`
	Pad string `json:"pad,omitempty"`
}

// appendItems appends items n0..n0+count-1 with a pad of padLen bytes to a
// JSON stream, batch at a time, and fails on any answer but 204.
func appendItems(t *testing.T, u string, n0, count, batch, padLen int) {
	t.Helper()
	pad := strings.Repeat("x", padLen)
	for i := n0; i < n0+count; i += batch {
		var b strings.Builder
		b.WriteByte('[')
		for j := i; j < min(i+batch, n0+count); j++ {
			if j > i {
				b.WriteByte(',')
			}
			v, _ := json.Marshal(item{N: j, Pad: pad})
			b.Write(v)
		}
		b.WriteByte(']')
		if r := wstest.Do(t, "POST", u, []byte(b.String()), "Content-Type", "application/json"); r.StatusCode != http.StatusNoContent {
			t.Fatalf("POST %s: %d %s", u, r.StatusCode, wstest.ReadAll(t, r))
		}
	}
}

// catchupItems reads a JSON stream with catch-up reads (no live), from
// offset -1 until Stream-Up-To-Date, and returns the items of each
// response.
func catchupItems(t *testing.T, u string) [][]item {
	t.Helper()
	var out [][]item
	offset := "-1"
	for range 100 {
		r := wstest.Do(t, "GET", u+"?offset="+offset, nil)
		body := wstest.ReadAll(t, r)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("GET %s at %s: %d %s", u, offset, r.StatusCode, body)
		}
		var items []item
		if err := json.Unmarshal(body, &items); err != nil {
			t.Fatalf("GET %s at %s: not a JSON array (%v): %.200s", u, offset, err, body)
		}
		out = append(out, items)
		offset = r.Header.Get("Stream-Next-Offset")
		if r.Header.Get("Stream-Up-To-Date") == "true" {
			return out
		}
	}
	t.Fatalf("GET %s: not up to date after 100 reads", u)
	return nil
}

// checkItems fails unless the responses hold items 0..want-1 in order.
func checkItems(t *testing.T, name string, got [][]item, want int) {
	t.Helper()
	n := 0
	for _, resp := range got {
		for _, it := range resp {
			if it.N != n {
				t.Fatalf("%s: item %d is %d", name, n, it.N)
			}
			n++
		}
	}
	if n != want {
		t.Fatalf("%s: %d items in %d responses, want %d", name, n, len(got), want)
	}
}

// TestDurableCatchupReadsToTail: a catch-up read (no live) answers
// everything up to the tail as of the request in one response, on both
// backends, as the official client expects of a live: false read: 5,000
// small JSON messages (once cut at 1,000), and a larger stream read from
// the store page by page. Past -max-catchup-bytes (2 MiB here) a response
// ends without Stream-Up-To-Date, a valid JSON array, and the next read
// continues from its Stream-Next-Offset.
func TestDurableCatchupReadsToTail(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, wstest.Options{Backend: backend, RetainMessages: 10,
				Server: func(c *ws.ServerConfig) { c.MaxCatchupBytes = 2 << 20 }})
			stream := srv.URL + "/v1/stream/"
			for _, name := range []string{"small", "medium", "large", "text"} {
				ct := "application/json"
				if name == "text" {
					ct = "text/plain"
				}
				if r := wstest.Do(t, "PUT", stream+name, nil, "Content-Type", ct); r.StatusCode != http.StatusCreated {
					t.Fatalf("PUT %s: %d %s", name, r.StatusCode, wstest.ReadAll(t, r))
				}
			}

			// 5,000 messages of about 10 bytes: one response, held.
			appendItems(t, stream+"small", 0, 5000, 1000, 0)
			got := catchupItems(t, stream+"small")
			checkItems(t, "small", got, 5000)
			if len(got) != 1 {
				t.Fatalf("small: %d responses, want 1", len(got))
			}

			// 5,000 messages of about 300 bytes (1.5 MB): one response,
			// streamed page by page after its end was planned.
			appendItems(t, stream+"medium", 0, 5000, 500, 290)
			got = catchupItems(t, stream+"medium")
			checkItems(t, "medium", got, 5000)
			if len(got) != 1 {
				t.Fatalf("medium: %d responses, want 1", len(got))
			}

			// 5,000 messages of about 1 KB (5 MB): past the 2 MiB cap, so
			// three responses of at most 2 MiB each.
			appendItems(t, stream+"large", 0, 5000, 500, 1000)
			got = catchupItems(t, stream+"large")
			checkItems(t, "large", got, 5000)
			if len(got) != 3 {
				t.Fatalf("large: %d responses, want 3", len(got))
			}

			// Text: 3,000 lines in one response.
			var want strings.Builder
			for i := range 3000 {
				line := "line " + strconv.Itoa(i) + "\n"
				want.WriteString(line)
				if r := wstest.Do(t, "POST", stream+"text", []byte(line), "Content-Type", "text/plain"); r.StatusCode != http.StatusNoContent {
					t.Fatalf("POST text: %d %s", r.StatusCode, wstest.ReadAll(t, r))
				}
			}
			r := wstest.Do(t, "GET", stream+"text?offset=-1", nil)
			if body := wstest.ReadAll(t, r); string(body) != want.String() || r.Header.Get("Stream-Up-To-Date") != "true" ||
				r.Header.Get("Stream-Next-Offset") != fmt.Sprintf("%016d_%016d", 1, 3000) {
				t.Fatalf("text: %d bytes (want %d), up to date %q, next offset %s", len(body), want.Len(),
					r.Header.Get("Stream-Up-To-Date"), r.Header.Get("Stream-Next-Offset"))
			}
		})
	}
}

// TestDurableLargeJSONBatch: the official client's IdempotentProducer
// sends what is appended quickly as one JSON array of up to 1 MiB of
// values (its default), a comma between each: 50,000 small items in one
// request (once refused with 413, "at most 10000"), and a batch of 1 MiB
// of tiny values, a body of 1.2 MB whose messages once cost more than the
// channel's own memory bound (each was counted as a message of its own;
// now the request is one run of its bytes), are accepted whole, once, on
// both backends.
func TestDurableLargeJSONBatch(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, wstest.Options{Backend: backend})
			u := srv.URL + "/v1/stream/batch"
			if r := wstest.Do(t, "PUT", u, nil, "Content-Type", "application/json"); r.StatusCode != http.StatusCreated {
				t.Fatalf("PUT: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			batch := func(n0, count int, value func(int) string) []byte {
				var b strings.Builder
				b.WriteByte('[')
				for i := n0; i < n0+count; i++ {
					if i > n0 {
						b.WriteByte(',')
					}
					b.WriteString(value(i))
				}
				b.WriteByte(']')
				return []byte(b.String())
			}
			post := func(seq string, body []byte) {
				t.Helper()
				r := wstest.Do(t, "POST", u, body, "Content-Type", "application/json",
					"Producer-Id", "p1", "Producer-Epoch", "0", "Producer-Seq", seq)
				if r.StatusCode != http.StatusOK {
					t.Fatalf("POST of %d bytes (Producer-Seq %s): %d %s", len(body), seq, r.StatusCode, wstest.ReadAll(t, r))
				}
			}
			post("0", batch(0, 50_000, func(i int) string { return `{"n":` + strconv.Itoa(i) + `}` }))
			// 150,000 values of 7 bytes: 1.05 MB of values, 1.2 MB of body.
			tiny := batch(50_000, 150_000, func(i int) string { return strconv.Itoa(1_000_000 + i) })
			if len(tiny) <= 1<<20 {
				t.Fatalf("the tiny batch is %d bytes, want more than 1 MiB", len(tiny))
			}
			post("1", tiny)
			if r := wstest.Do(t, "POST", u, tiny, "Content-Type", "application/json",
				"Producer-Id", "p1", "Producer-Epoch", "0", "Producer-Seq", "1"); r.StatusCode != http.StatusNoContent {
				t.Fatalf("retry of Producer-Seq 1: %d, want 204", r.StatusCode)
			}

			r := wstest.Do(t, "GET", u+"?offset=-1", nil)
			body := wstest.ReadAll(t, r)
			var got []json.RawMessage
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("GET: not a JSON array: %v", err)
			}
			if len(got) != 200_000 || string(got[0]) != `{"n":0}` || string(got[49_999]) != `{"n":49999}` ||
				string(got[50_000]) != "1050000" || string(got[199_999]) != "1199999" {
				t.Fatalf("GET: %d messages, want 200000", len(got))
			}
			if r.Header.Get("Stream-Up-To-Date") != "true" {
				t.Fatal("GET: not up to date")
			}
		})
	}
}

// TestDurableLongPollAtNow: a long-poll at offset=now waits at the tail as
// of the request and answers the message appended meanwhile, with the
// offset after it, on both backends.
func TestDurableLongPollAtNow(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, wstest.Options{Backend: backend, LongPollTimeout: 20 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			u := srv.URL + "/v1/stream/now"
			if r := wstest.Do(t, "PUT", u, []byte("a\n"), "Content-Type", "text/plain"); r.StatusCode != http.StatusCreated {
				t.Fatalf("PUT: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			done := make(chan *http.Response, 1)
			go func() { done <- wstest.Do(t, "GET", u+"?offset=now&live=long-poll", nil) }()
			wstest.WaitFor(t, 10*time.Second, "the long-poll to register", func() bool {
				info, err := srv.Hub.Info(ctx, "now")
				return err == nil && info.Subscribers == 1
			})
			if r := wstest.Do(t, "POST", u, []byte("b\n"), "Content-Type", "text/plain"); r.StatusCode != http.StatusNoContent {
				t.Fatalf("POST: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			r := <-done
			if body := wstest.ReadAll(t, r); r.StatusCode != http.StatusOK || string(body) != "b\n" ||
				r.Header.Get("Stream-Next-Offset") != "0000000000000001_0000000000000002" {
				t.Fatalf("long-poll at now: %d %q at %s", r.StatusCode, body, r.Header.Get("Stream-Next-Offset"))
			}
		})
	}
}

// failingReads fails the history reads of one channel once armed, after
// the first ok of them.
type failingReads struct {
	hub.Store
	id    string
	armed atomic.Bool
	ok    atomic.Int64
}

func (s *failingReads) Messages(ctx context.Context, id string, after int64, limit int) ([]persist.Message, error) {
	if id == s.id && s.armed.Load() && s.ok.Add(-1) < 0 {
		return nil, errors.New("injected: history read failed")
	}
	return s.Store.Messages(ctx, id, after, limit)
}

// TestDurableCatchupBrokenRead: when a catch-up's messages cannot be read
// whole after its response has started (its end planned, part of it sent),
// the server breaks the connection: the client gets an error, never a
// short body that looks complete.
func TestDurableCatchupBrokenRead(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			fail := &failingReads{id: "broken"}
			srv := wstest.Start(t, wstest.Options{Backend: backend, RetainMessages: 1,
				Store: func(s hub.Store) hub.Store { fail.Store = s; return fail }})
			u := srv.URL + "/v1/stream/broken"
			if r := wstest.Do(t, "PUT", u, nil, "Content-Type", "application/json"); r.StatusCode != http.StatusCreated {
				t.Fatalf("PUT: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			// 3,000 messages of about 500 bytes, durable (a producer's
			// append is answered once persisted): three pages, 1.5 MB.
			pad := strings.Repeat("x", 500)
			for i := range 3 {
				var b strings.Builder
				b.WriteByte('[')
				for j := range 1000 {
					if j > 0 {
						b.WriteByte(',')
					}
					v, _ := json.Marshal(item{N: i*1000 + j, Pad: pad})
					b.Write(v)
				}
				b.WriteByte(']')
				if r := wstest.Do(t, "POST", u, []byte(b.String()), "Content-Type", "application/json",
					"Producer-Id", "p", "Producer-Epoch", "0", "Producer-Seq", strconv.Itoa(i)); r.StatusCode != http.StatusOK {
					t.Fatalf("POST: %d %s", r.StatusCode, wstest.ReadAll(t, r))
				}
			}
			// The plan reads the three pages, the response one more; the
			// next read fails.
			fail.ok.Store(4)
			fail.armed.Store(true)
			r := wstest.Do(t, "GET", u+"?offset=-1", nil)
			if r.StatusCode != http.StatusOK || r.Header.Get("Stream-Up-To-Date") != "true" {
				t.Fatalf("GET: %d, up to date %q", r.StatusCode, r.Header.Get("Stream-Up-To-Date"))
			}
			body, err := io.ReadAll(r.Body)
			if err == nil {
				t.Fatalf("GET: a clean body of %d bytes, want a broken response", len(body))
			}
			t.Logf("GET: %d bytes, then %v", len(body), err)
			if len(body) == 0 {
				t.Fatalf("GET: nothing before the break (%v): the first page should have been sent", err)
			}
		})
	}
}
