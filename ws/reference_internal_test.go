package ws

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/hub"
)

// TestTextStreamEndAfterQuiet: a text stream that was quiet for longer than
// the write timeout still ends cleanly, with its trailer, when the channel
// closes or the server shuts down. The write deadline of the last message
// used to stay on the connection, so the end of the response (the last
// chunk and the Stream-End trailer, written once the handler returns)
// failed on a deadline long past, and the client saw a cut-off response
// instead of a complete one.
//
// The write timeout is scaled down to 200ms and the quiet is waited out on
// a timer: the passing of the deadline is the thing under test, no event
// marks it.
func TestTextStreamEndAfterQuiet(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	ts := startTestServer(t, hub.Config{}, ServerConfig{WriteTimeout: writeTimeout, PingInterval: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	follow := func(id string) *http.Response {
		t.Helper()
		if _, err := ts.hub.Create(ctx, id, nil, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := ts.hub.Append(ctx, id, []byte("one\n"), false); err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequestWithContext(ctx, "GET", ts.url+"/?id="+id, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /?id=%s: %v %v", id, resp, err)
		}
		first := make([]byte, 4)
		if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "one\n" {
			t.Fatalf("%s: first message %q %v", id, first, err)
		}
		return resp
	}
	quiet := func() {
		wait := time.NewTimer(writeTimeout * 3 / 2)
		<-wait.C
	}
	check := func(name string, resp *http.Response, trailer string) {
		t.Helper()
		defer resp.Body.Close()
		rest, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Errorf("%s: the response did not end cleanly: %v (after %q)", name, err, rest)
			return
		}
		if got := resp.Trailer.Get(streamEndTrailer); got != trailer {
			t.Errorf("%s: trailer Stream-End %q, want %q", name, got, trailer)
		}
	}

	closed := follow("closed")
	quiet()
	if _, err := ts.hub.Close(ctx, "closed"); err != nil {
		t.Fatal(err)
	}
	check("closed after quiet", closed, "closed")

	stopped := follow("stopped")
	quiet()
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ts.srv.Shutdown(sctx)
	}()
	check("shut down after quiet", stopped, "shutdown")
}
