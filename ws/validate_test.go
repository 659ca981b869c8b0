package ws_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/messages-server/messages/ws/wire"
	"github.com/messages-server/messages/ws/wstest"
)

// TestBadInput sends every kind of bad request and checks the status and
// the message, and that existing data is untouched.
func TestBadInput(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{MaxMessageBytes: 1024})
	base := srv.URL
	createChannel(t, base, "keep")
	appendMsg(t, base, "keep", "one")
	createChannel(t, base, "closed")
	appendMsg(t, base, "closed", "x")
	if st, b := do(t, "POST", base+"/channels/closed/close", "", nil); st != 200 {
		t.Fatalf("close: %d %s", st, b)
	}
	long := strings.Repeat("a", 129)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"bad id", "POST", "/channels", `{"id":"a b"}`, 400, "characters outside"},
		{"too long id", "POST", "/channels", `{"id":"` + long + `"}`, 400, "at most 128"},
		{"bad id in path", "GET", "/channels/a%20b", "", 400, "characters outside"},
		{"dot id", "POST", "/channels", `{"id":"."}`, 400, "not allowed"},
		{"dot-dot id", "POST", "/channels", `{"id":".."}`, 400, "not allowed"},
		{"dot-dot id reference", "POST", "/?max=3", "..", 400, "not allowed"},
		{"oversized reference body", "POST", "/?max=3", strings.Repeat("r", 1025), 413, "larger than 1024"},
		{"dot id stream", "GET", "/?id=.", "", 400, "not allowed"},
		{"dot-dot id stream", "GET", "/?id=..", "", 400, "not allowed"},
		{"escaped dot-dot id in path", "GET", "/channels/%2E%2E/messages", "", 400, "not allowed"},
		{"unknown id", "GET", "/channels/nope", "", 404, "not found"},
		{"unknown id stream", "GET", "/?id=nope", "", 404, "not found"},
		{"empty id stream", "GET", "/?id=", "", 400, "missing"},
		{"append unknown", "POST", "/channels/nope/messages", "x", 404, "not found"},
		{"freq zero", "POST", "/?freq=0&max=5", "f0", 400, "freq"},
		{"freq tiny", "POST", "/?freq=1e-11", "f5", 400, "freq"},
		{"freq negative", "POST", "/?freq=-3", "f1", 400, "freq"},
		{"freq NaN", "POST", "/?freq=NaN", "f2", 400, "freq"},
		{"freq huge", "POST", "/?freq=1e12", "f3", 400, "freq"},
		{"freq text", "POST", "/?freq=fast", "f4", 400, "freq"},
		{"max zero", "POST", "/?max=0", "m0", 400, "max"},
		{"max negative", "POST", "/?max=-1", "m1", 400, "max"},
		{"max text", "POST", "/?max=lots", "m2", 400, "max"},
		{"max huge", "POST", "/?max=99999999999", "m3", 400, "max"},
		{"generator freq", "POST", "/channels", `{"generator":{"freq":0,"max":5}}`, 400, "freq"},
		{"generator max", "POST", "/channels", `{"generator":{"freq":5,"max":0}}`, 400, "max"},
		{"generator start", "POST", "/channels", `{"generator":{"freq":5,"max":5,"start_when_subscribers":-1}}`, 400, "start_when_subscribers"},
		{"oversized message", "POST", "/channels/keep/messages", strings.Repeat("z", 1025), 413, "larger than"},
		{"invalid utf-8", "POST", "/channels/keep/messages", "\xff\xfe", 400, "UTF-8"},
		{"duplicate id", "POST", "/channels", `{"id":"keep"}`, 409, "already exists"},
		{"duplicate id reference", "POST", "/?max=3", "keep", 409, "already exists"},
		{"append to closed", "POST", "/channels/closed/messages", "late", 409, "closed"},
		{"close closed", "POST", "/channels/closed/close", "", 409, "closed"},
		{"bad from", "GET", "/channels/keep/messages?from=-1", "", 400, "from"},
		{"from past end", "GET", "/channels/keep/messages?from=99", "", 400, "past"},
		{"bad limit", "GET", "/channels/keep/messages?limit=0", "", 400, "limit"},
		{"bad wait", "POST", "/channels/keep/messages?wait=soon", "x", 400, "wait"},
		{"wrong method", "PUT", "/channels/keep", "", 405, "allowed: DELETE, GET, HEAD"},
		{"wrong method root", "PUT", "/", "", 405, "allowed: GET, HEAD, POST"},
		{"malformed JSON", "POST", "/channels", `{"id":`, 400, "malformed JSON"},
		{"unknown JSON field", "POST", "/channels", `{"name":"x"}`, 400, "malformed JSON"},
		{"unknown path", "GET", "/nope", "", 404, "no such endpoint"},
		{"malformed query stream", "GET", "/?id=%zz", "", 400, "malformed query"},
		{"malformed query reference", "POST", "/?max=3&x=%", "mq", 400, "malformed query"},
		{"malformed query ws", "GET", "/ws?id=keep&from=%zz", "", 400, "malformed query"},
		{"malformed query history", "GET", "/channels/keep/messages?limit=%zz", "", 400, "malformed query"},
		{"malformed query append", "POST", "/channels/keep/messages?wait=%zz", "x", 400, "malformed query"},
		{"malformed query list", "GET", "/channels?after=%zz", "", 400, "malformed query"},
		{"semicolon query", "GET", "/channels?limit=5;after=a", "", 400, "malformed query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, b := do(t, tc.method, base+tc.path, "", []byte(tc.body))
			if st != tc.status {
				t.Fatalf("status %d, want %d (%s)", st, tc.status, b)
			}
			e := decodeJSON[struct{ Error string }](t, b)
			if !strings.Contains(e.Error, tc.msg) {
				t.Errorf("error %q does not mention %q", e.Error, tc.msg)
			}
		})
	}
	// Nothing accepted was lost or changed.
	st, b := do(t, "GET", base+"/channels/keep/messages", "", nil)
	h := decodeJSON[struct {
		Messages []struct {
			Seq  int64
			Data string
		}
	}](t, b)
	if st != 200 || len(h.Messages) != 1 || h.Messages[0].Data != "one" {
		t.Errorf("keep's history changed: %d %s", st, b)
	}
	for _, id := range []string{"f0", "f1", "m0", "m1", "mq"} {
		if st, _ := do(t, "GET", base+"/channels/"+id, "", nil); st != 404 {
			t.Errorf("a refused request created channel %s", id)
		}
	}

	// WebSocket errors: an error frame, then a 44xx close.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, query string
		code        string
		status      websocket.StatusCode
	}{
		{"ws unknown id", "id=nope", wire.CodeNotFound, websocket.StatusCode(wire.CloseNotFound)},
		{"ws bad id", "id=a%20b", wire.CodeBadRequest, websocket.StatusCode(wire.CloseBadRequest)},
		{"ws dot-dot id", "id=..", wire.CodeBadRequest, websocket.StatusCode(wire.CloseBadRequest)},
		{"ws bad from", "id=keep&from=x", wire.CodeBadRequest, websocket.StatusCode(wire.CloseBadRequest)},
		{"ws from past end", "id=keep&from=5", wire.CodeBadRequest, websocket.StatusCode(wire.CloseBadRequest)},
		{"ws bad epoch", "id=keep&epoch=zero", wire.CodeBadRequest, websocket.StatusCode(wire.CloseBadRequest)},
		{"ws future epoch", "id=keep&epoch=99", wire.CodeBadRequest, websocket.StatusCode(wire.CloseBadRequest)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/ws?"+tc.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("want an error frame, got %v", err)
			}
			f, err := wire.DecodeFrame(b)
			if err != nil || f.Type != wire.FrameError || f.Code != tc.code || f.Message == "" {
				t.Fatalf("want error frame %s, got %+v (%v)", tc.code, f, err)
			}
			_, _, err = c.Read(ctx)
			if st := websocket.CloseStatus(err); st != tc.status {
				t.Errorf("close status %d, want %d", st, tc.status)
			}
		})
	}
	// Not a WebSocket request at all.
	if st, _ := do(t, "GET", base+"/ws?id=keep", "", nil); st < 400 || st >= 500 {
		t.Errorf("plain GET /ws: status %d, want 4xx", st)
	}
}

// TestNULInIDsAndCursors: a NUL byte (which PostgreSQL text cannot hold),
// or bytes that are not UTF-8, in an id or a cursor are bad input on both
// backends: 400 naming the parameter, never a store error (503 or 500).
func TestNULInIDsAndCursors(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, wstest.Options{Backend: backend})
			createChannel(t, srv.URL, "keep")
			for _, c := range []struct{ method, path, body, msg string }{
				{"GET", "/channels?after=%00", "", "after"},
				{"GET", "/channels?after=keep%00", "", "after"},
				{"GET", "/channels?after=%FF", "", "after"},
				{"GET", "/channels/a%00b", "", "characters outside"},
				{"GET", "/channels/keep/messages?from=%00", "", "from"},
				{"GET", "/?id=a%00b", "", "characters outside"},
				{"POST", "/channels", `{"id":"a\u0000b"}`, "characters outside"},
				{"GET", "/v1/stream/a%00b", "", "characters outside"},
				{"PUT", "/v1/stream/fork", "", "Stream-Forked-From"},
			} {
				var hdr []string
				if c.method == "PUT" {
					hdr = []string{"Stream-Forked-From", "/v1/stream/a%00b"}
				}
				r := wstest.Do(t, c.method, srv.URL+c.path, []byte(c.body), hdr...)
				b := wstest.ReadAll(t, r)
				if r.StatusCode != 400 || !strings.Contains(string(b), c.msg) {
					t.Errorf("%s %s: %d %s, want 400 naming %q", c.method, c.path, r.StatusCode, b, c.msg)
				}
			}
		})
	}
}
