package ws_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wstest"
)

// historyPage reads GET /channels/{id}/messages and returns its messages'
// data, decoded if the page is base64.
func historyPage(t testing.TB, base, id string) []string {
	t.Helper()
	st, b := do(t, "GET", base+"/channels/"+id+"/messages", "", nil)
	if st != http.StatusOK {
		t.Fatalf("history of %s: %d %s", id, st, b)
	}
	page := decodeJSON[struct {
		Encoding string `json:"encoding"`
		Messages []struct {
			Data string `json:"data"`
		} `json:"messages"`
	}](t, b)
	var out []string
	for _, m := range page.Messages {
		d := m.Data
		if page.Encoding == "base64" {
			raw, err := base64.StdEncoding.DecodeString(d)
			if err != nil {
				t.Fatalf("history of %s: %v", id, err)
			}
			d = string(raw)
		}
		out = append(out, d)
	}
	return out
}

// TestTextStreamsTakeUTF8Only: a text or JSON Durable Stream refuses a body
// that is not UTF-8 with a 400, at creation and on append, so that its
// subscribers never get a WebSocket text message that is not UTF-8 (which
// a strict client closes with 1007, on every reconnect). A binary stream
// takes any bytes, delivered byte for byte: base64 in WebSocket frames and
// history pages. Subscribers here are strict: every text message they read
// must be valid UTF-8.
func TestTextStreamsTakeUTF8Only(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, wstest.Options{Backend: backend})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			stream := srv.URL + "/v1/stream/"
			const bad = "ab\xffcd"
			for _, ct := range []string{"text/plain", "application/json"} {
				name := strings.ReplaceAll(ct, "/", "-")
				if r := wstest.Do(t, "PUT", stream+name+"-made", []byte(`"`+bad+`"`), "Content-Type", ct); r.StatusCode != http.StatusBadRequest {
					t.Errorf("PUT %s with a body not UTF-8: %d %s, want 400", ct, r.StatusCode, wstest.ReadAll(t, r))
				}
				if r := wstest.Do(t, "PUT", stream+name, nil, "Content-Type", ct); r.StatusCode != http.StatusCreated {
					t.Fatalf("PUT %s: %d %s", ct, r.StatusCode, wstest.ReadAll(t, r))
				}
				sub := dialRaw(ctx, t, srv.URL, name, 0, "")
				for _, body := range []string{bad, `"` + bad + `"`, `["ok","` + bad + `"]`} {
					r := wstest.Do(t, "POST", stream+name, []byte(body), "Content-Type", ct)
					if b := wstest.ReadAll(t, r); r.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "UTF-8") {
						t.Errorf("POST %q to a %s stream: %d %s, want 400 about UTF-8", body, ct, r.StatusCode, b)
					}
				}
				if r := wstest.Do(t, "POST", stream+name, []byte(`"é"`), "Content-Type", ct); r.StatusCode != http.StatusNoContent {
					t.Fatalf("POST UTF-8 to %s: %d %s", ct, r.StatusCode, wstest.ReadAll(t, r))
				}
				if err := sub.readUntil(ctx, 1); err != nil {
					t.Fatalf("%s subscriber: %v", ct, err)
				}
				if sub.data[0] != `"é"` {
					t.Errorf("%s subscriber got %q", ct, sub.data)
				}
			}

			// Binary: any bytes, as they were sent, through every path.
			if r := wstest.Do(t, "PUT", stream+"bin", nil, "Content-Type", "application/octet-stream"); r.StatusCode != http.StatusCreated {
				t.Fatalf("PUT binary: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			sub := dialRaw(ctx, t, srv.URL, "bin", 0, "")
			if r := wstest.Do(t, "POST", stream+"bin", []byte(bad), "Content-Type", "application/octet-stream"); r.StatusCode != http.StatusNoContent {
				t.Fatalf("POST binary: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			if st, b := do(t, "POST", srv.URL+"/channels/bin/messages", "application/octet-stream", []byte("\xfe\x00")); st != http.StatusOK {
				t.Fatalf("channels API append to the binary stream: %d %s", st, b)
			}
			if err := sub.readUntil(ctx, 2); err != nil {
				t.Fatal(err)
			}
			want := []string{bad, "\xfe\x00"}
			if strings.Join(sub.data, "|") != strings.Join(want, "|") {
				t.Errorf("binary subscriber got %q, want %q", sub.data, want)
			}
			if got := historyPage(t, srv.URL, "bin"); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("binary history %q, want %q", got, want)
			}
			r := wstest.Do(t, "GET", stream+"bin?offset=-1", nil)
			if got := wstest.ReadAll(t, r); string(got) != bad+"\xfe\x00" {
				t.Errorf("binary Durable Streams read %q", got)
			}
			// The reference API streams the bytes as they are.
			if st, b := do(t, "POST", srv.URL+"/channels/bin/close", "", nil); st != http.StatusOK {
				t.Fatalf("close: %d %s", st, b)
			}
			if st, got := do(t, "GET", srv.URL+"/?id=bin", "", nil); st != http.StatusOK || string(got) != bad+"\xfe\x00" {
				t.Errorf("reference API read of the binary stream: %d %q", st, got)
			}

			// The channels API and the reference API refuse text that is
			// not UTF-8 as well.
			createChannel(t, srv.URL, "text")
			if st, b := do(t, "POST", srv.URL+"/channels/text/messages", "text/plain", []byte(bad)); st != http.StatusBadRequest {
				t.Errorf("channels API append not UTF-8: %d %s, want 400", st, b)
			}
			if st, b := do(t, "POST", srv.URL+"/?max=1", "text/plain", []byte(bad)); st != http.StatusBadRequest {
				t.Errorf("reference API id not UTF-8: %d %s, want 400", st, b)
			}
		})
	}
}

// TestStoredInvalidUTF8StaysValidOnTheWire: a text channel that holds a
// message that is not UTF-8 (stored before the edge refused such bodies)
// is not poisoned: a strict WebSocket subscriber gets it base64-encoded,
// byte for byte, in frames that are all valid UTF-8, from the store and
// from the page cache, alone and within a batch; the history API gives it
// base64 as well, rather than U+FFFD.
func TestStoredInvalidUTF8StaysValidOnTheWire(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, wstest.Options{Backend: backend})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			if _, err := srv.Store.CreateChannel(ctx, "legacy", nil); err != nil {
				t.Fatal(err)
			}
			want := []string{"ok\n", "ab\xffcd", "fine\n"}
			var ms []persist.Message
			for i, d := range want {
				ms = append(ms, persist.Message{Seq: int64(i + 1), Time: time.Now().UnixMicro(), Data: []byte(d)})
			}
			if err := srv.Store.WriteBatches(ctx, []*persist.Batch{{Channel: "legacy", Messages: ms}}); err != nil {
				t.Fatal(err)
			}
			for from := range int64(3) {
				for range 2 { // the second reads the page the first cached
					sub := dialRaw(ctx, t, srv.URL, "legacy", from, "")
					if err := sub.readUntil(ctx, 3); err != nil {
						t.Fatalf("from %d: %v", from, err)
					}
					if strings.Join(sub.data, "|") != strings.Join(want[from:], "|") {
						t.Errorf("from %d: got %q, want %q", from, sub.data, want[from:])
					}
				}
			}
			appendMsg(t, srv.URL, "legacy", "live\n")
			sub := dialRaw(ctx, t, srv.URL, "legacy", 0, "")
			if err := sub.readUntil(ctx, 4); err != nil {
				t.Fatal(err)
			}
			if got := historyPage(t, srv.URL, "legacy"); strings.Join(got, "|") != strings.Join(append(want, "live\n"), "|") {
				t.Errorf("history %q", got)
			}
		})
	}
}
