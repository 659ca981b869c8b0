package ws_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/client"
	"github.com/messages-server/messages/ws/wire"
	"github.com/messages-server/messages/ws/wstest"
)

// shortToken is a subscribe token for channel id that the server stops
// accepting two to three seconds from now: exp lies in the past, within the
// clock skew tolerated (auth.Leeway), so that no test waits for a real
// expiry.
func shortToken(t *testing.T, id string) string {
	return mint(t, testSecret, auth.Claims{Subscribe: []string{id}}, -auth.Leeway+3*time.Second)
}

// TestTokenExpiryEndsStreams: a stream outlives its request, but not its
// token. When the token a subscription was opened with expires, the
// WebSocket gets an unauthorized error frame and close 4401 (and resumes
// with a fresh token, with no gap); the text stream ends with the trailer
// Stream-End: token-expired; a Durable Streams SSE response ends (the
// client reconnects with a fresh token). Each long before any other limit.
func TestTokenExpiryEndsStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := startAuth(t, "sqlite", false, nil)
	admin := mint(t, testSecret, auth.Claims{Admin: true}, time.Hour)
	const id = "expiring"
	if r := request(t, "POST", srv.URL+"/channels", admin, `{"id":"`+id+`"}`, map[string]string{"Content-Type": "application/json"}); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	publish := func(data string) {
		t.Helper()
		if r := request(t, "POST", srv.URL+"/channels/"+id+"/messages", admin, data, nil); r.status != http.StatusOK {
			t.Fatalf("append: %d %s", r.status, r.body)
		}
	}
	publish("one\n")

	t.Run("websocket", func(t *testing.T) {
		sub, err := client.Subscribe(ctx, srv.URL, id, client.Options{Token: shortToken(t, id)})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		var got []string
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				if !errors.Is(err, client.ErrUnauthorized) || !strings.Contains(err.Error(), "token") {
					t.Fatalf("the subscription ended with %v, want the server's unauthorized error", err)
				}
				break
			}
			if e.Kind == client.EventMessage {
				got = append(got, e.Data)
			}
			if e.Kind == client.EventLive {
				publish("two\n")
			}
		}
		if strings.Join(got, "") != "one\ntwo\n" {
			t.Fatalf("got %q before the token expired", got)
		}
		// A fresh token resumes where the expired one stopped.
		fresh := mint(t, testSecret, auth.Claims{Subscribe: []string{id}}, time.Hour)
		again, err := client.Subscribe(ctx, srv.URL, id, client.Options{Token: fresh, From: sub.LastSeq(), Epoch: sub.Epoch()})
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		publish("three\n")
		for {
			e, err := again.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if e.Kind == client.EventMessage {
				if e.Seq != 3 || e.Data != "three\n" {
					t.Fatalf("resumed with seq %d %q, want seq 3", e.Seq, e.Data)
				}
				break
			}
		}
		if v := outcomeCount(t, srv, "token_expired"); v != 1 {
			t.Errorf("connections that ended with token_expired: %v, want 1", v)
		}
	})

	t.Run("websocket renews", func(t *testing.T) {
		// With Resume and a TokenSource, the Go client asks for a fresh
		// token when the server ends the subscription, and goes on.
		var calls atomic.Int64
		sub, err := client.Subscribe(ctx, srv.URL, id, client.Options{Resume: true,
			TokenSource: func(context.Context) (string, error) {
				if calls.Add(1) == 1 {
					return shortToken(t, id), nil
				}
				return mint(t, testSecret, auth.Claims{Subscribe: []string{id}}, time.Hour), nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		hellos, want, sentBefore := 0, int64(0), false
		for done := false; !done; {
			e, err := sub.Next(ctx)
			if err != nil {
				t.Fatalf("after %d hellos, at seq %d: %v", hellos, want, err)
			}
			switch e.Kind {
			case client.EventHello:
				if hellos++; hellos == 2 {
					publish("after\n") // after the renewal
				}
			case client.EventMessage:
				if want++; e.Seq != want {
					t.Fatalf("seq %d, want %d", e.Seq, want)
				}
				done = hellos == 2 && e.Data == "after\n"
			case client.EventLive:
				if !sentBefore {
					sentBefore = true
					publish("before\n") // before the token expires
				}
			}
		}
		if n := calls.Load(); n != 2 {
			t.Fatalf("%d tokens asked for, want 2: the first and one renewal", n)
		}
	})

	t.Run("websocket close code", func(t *testing.T) {
		c, _, err := websocket.Dial(ctx, wsURL(srv.URL, id, 0, "")+"&token="+shortToken(t, id), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		var last []byte
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				if st := websocket.CloseStatus(err); st != wire.CloseUnauthorized {
					t.Fatalf("closed with %v (%v), want %d", st, err, wire.CloseUnauthorized)
				}
				break
			}
			last = b
		}
		f, err := wire.DecodeFrame(last)
		if err != nil || f.Type != wire.FrameError || f.Code != wire.CodeUnauthorized {
			t.Fatalf("last frame %s (%v), want an unauthorized error frame", last, err)
		}
	})

	t.Run("text", func(t *testing.T) {
		resp, b, err := readStream(ctx, srv.URL+"/?id="+id, shortToken(t, id))
		if err != nil {
			t.Fatalf("the text stream: %v", err)
		}
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "one\ntwo\n") {
			t.Fatalf("text stream: %d %q", resp.StatusCode, b)
		}
		if end := resp.Trailer.Get("Stream-End"); end != "token-expired" {
			t.Fatalf("Stream-End trailer %q, want token-expired", end)
		}
	})

	t.Run("sse about to expire", func(t *testing.T) {
		// Valid for less than a second more: too little to open an event
		// stream, which is refused with 401 rather than cut at once.
		now := time.Now()
		ttl := time.Unix(now.Unix()+1, 0).Add(-auth.Leeway).Sub(now)
		tok := mint(t, testSecret, auth.Claims{Subscribe: []string{id}}, ttl)
		r := request(t, "GET", srv.URL+"/v1/stream/"+id+"?offset=-1&live=sse", tok, "", nil)
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "expire") {
			t.Fatalf("SSE with a token about to expire: %d %s, want 401", r.status, r.body)
		}
	})

	t.Run("sse", func(t *testing.T) {
		// Read to its end: an SSE response lasts a minute otherwise.
		resp, b, err := readStream(ctx, srv.URL+"/v1/stream/"+id+"?offset=-1&live=sse", shortToken(t, id))
		if err != nil {
			t.Fatalf("SSE: %v", err)
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "one") {
			t.Fatalf("SSE: %d %q", resp.StatusCode, b)
		}
	})
}

// outcomeCount is the messages_websocket_connections_total of one outcome.
func outcomeCount(t *testing.T, srv *wstest.Server, outcome string) float64 {
	t.Helper()
	mfs, err := srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "messages_websocket_connections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// readStream GETs u with token and reads the response to its end.
func readStream(ctx context.Context, u, token string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// TestTokenExpiryEndsLongPoll: a Durable Streams long-poll lasts no longer
// than its token. One still waiting when the token expires is answered
// 401 (invalid_token) at once, long before the long-poll timeout, and
// serves nothing; polling again from the same offset with a fresh token
// gets what came since.
func TestTokenExpiryEndsLongPoll(t *testing.T) {
	a, err := auth.New(context.Background(), auth.Config{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite", Auth: a, LongPollTimeout: time.Hour})
	admin := mint(t, testSecret, auth.Claims{Admin: true}, time.Hour)
	const id = "polled"
	stream := srv.URL + "/v1/stream/" + id
	if r := request(t, "PUT", stream, admin, "one\n", map[string]string{"Content-Type": "text/plain"}); r.status != http.StatusCreated {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	resp, _, err := readStream(context.Background(), stream+"?offset=-1", admin)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("read: %v %v", err, resp)
	}
	offset := resp.Header.Get("Stream-Next-Offset")

	// The response must come at the token's expiry, two to three seconds
	// from now, and not after the hour of the long-poll timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, b, err := readStream(ctx, stream+"?live=long-poll&offset="+offset, shortToken(t, id))
	if err != nil {
		t.Fatalf("the long-poll was not answered when its token expired: %v", err)
	}
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") ||
		!strings.Contains(string(b), "expired") {
		t.Fatalf("long-poll past its token's expiry: %d %q %s, want 401 invalid_token", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), b)
	}

	if r := request(t, "POST", stream, admin, "two\n", map[string]string{"Content-Type": "text/plain"}); r.status != http.StatusNoContent {
		t.Fatalf("append: %d %s", r.status, r.body)
	}
	fresh := mint(t, testSecret, auth.Claims{Subscribe: []string{id}}, time.Hour)
	resp, b, err = readStream(ctx, stream+"?live=long-poll&offset="+offset, fresh)
	if err != nil || resp.StatusCode != http.StatusOK || string(b) != "two\n" {
		t.Fatalf("long-poll again with a fresh token: %v %v %q, want 200 and what came since", err, resp, b)
	}
}
