package ws_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/wstest"
)

// edgeRoutes are the requests FuzzHTTPEdge sends, by number: the channels
// API and the Durable Streams protocol, streaming reads left out (they
// last).
var edgeRoutes = []struct{ method, path string }{
	{"POST", "/channels"},
	{"GET", "/channels"},
	{"GET", "/channels/{id}"},
	{"POST", "/channels/{id}/messages"},
	{"GET", "/channels/{id}/messages"},
	{"POST", "/channels/{id}/close"},
	{"PUT", "/v1/stream/{id}"},
	{"POST", "/v1/stream/{id}"},
	{"GET", "/v1/stream/{id}"},
	{"HEAD", "/v1/stream/{id}"},
	{"DELETE", "/v1/stream/{id}"},
	{"DELETE", "/channels/{id}"},
}

// FuzzHTTPEdge sends requests with fuzzed ids, query strings, bodies and
// Durable Streams and producer headers to a server on SQLite. Bad input
// must get a 4xx with a JSON error, never a 5xx (the store is healthy), a
// panic, or an error in the log.
func FuzzHTTPEdge(f *testing.F) {
	f.Add(uint8(0), "s", "", []byte(`{"id":"s"}`), "", "", "", "", "", "text/plain")
	f.Add(uint8(3), "s", "wait=persisted", []byte("hello"), "", "", "", "", "", "text/plain")
	f.Add(uint8(1), "", "after=%00&limit=5", []byte(nil), "", "", "", "", "", "")
	f.Add(uint8(6), "j", "", []byte(`[1,2]`), "", "", "", "", "", "application/json")
	f.Add(uint8(7), "j", "", []byte(`[3]`), "p\xff", "0", "0", "1", "", "application/json")
	f.Add(uint8(6), "f", "", []byte(nil), "", "", "", "", "a.x://h/v1/stream/j", "")
	f.Add(uint8(8), "j", "offset=0000000000000001_0000000000000001&cursor=%00", []byte(nil), "", "", "", "", "", "")
	f.Add(uint8(4), "s", "from=9999999999999999999&limit=1", []byte(nil), "", "", "", "", "", "")
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError}))
	srv := wstest.Start(f, wstest.Options{Backend: "sqlite", Logger: log})
	f.Fuzz(func(t *testing.T, route uint8, id, query string, body []byte, producerID, epoch, seq, streamSeq, forkedFrom, ct string) {
		rt := edgeRoutes[int(route)%len(edgeRoutes)]
		if strings.Contains(query, "live") {
			return // a live read lasts
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		u := &url.URL{Path: strings.ReplaceAll(rt.path, "{id}", id), RawQuery: query}
		u.RawPath = strings.ReplaceAll(rt.path, "{id}", url.PathEscape(id))
		req := httptest.NewRequestWithContext(ctx, rt.method, "/", bytes.NewReader(body))
		req.URL, req.RequestURI = u, u.RequestURI()
		for k, v := range map[string]string{"Producer-Id": producerID, "Producer-Epoch": epoch, "Producer-Seq": seq,
			"Stream-Seq": streamSeq, "Stream-Forked-From": forkedFrom, "Content-Type": ct} {
			if v != "" {
				req.Header[k] = []string{v}
			}
		}
		before := len(logs.String())
		w := httptest.NewRecorder()
		srv.Handler.ServeHTTP(w, req)
		res := w.Result()
		b, _ := io.ReadAll(res.Body)
		logged := logs.String()[before:]
		if res.StatusCode >= 500 {
			t.Fatalf("%s %s: %d %s\n%s", rt.method, u, res.StatusCode, b, logged)
		}
		if logged != "" {
			t.Fatalf("%s %s: %d, logged an error:\n%s", rt.method, u, res.StatusCode, logged)
		}
		if res.StatusCode >= 400 && rt.method != "HEAD" {
			var e struct{ Error string }
			if json.Unmarshal(b, &e) != nil || e.Error == "" {
				t.Fatalf("%s %s: %d without a JSON error: %q", rt.method, u, res.StatusCode, b)
			}
		}
	})
}
