package ws_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wstest"
)

// rawRequest writes head (and partial body) on a new TCP connection and
// returns the response the server sends without the rest of the body.
func rawRequest(t *testing.T, base, head string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second)) // a hung server fails, not hangs
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response to a stalled body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestBodyTimeout: a body that stops arriving gets 408 within the body
// timeout, on every endpoint that reads one, and nothing is appended.
func TestBodyTimeout(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Server: func(c *ws.ServerConfig) { c.BodyTimeout = 100 * time.Millisecond }})
	createChannel(t, srv.URL, "slow")
	for _, req := range []string{"POST /channels/slow/messages", "POST /channels", "POST /?freq=10&max=1",
		"PUT /v1/stream/slowds", "POST /v1/stream/slow"} {
		head := fmt.Sprintf("%s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nabc", req)
		resp, body := rawRequest(t, srv.URL, head)
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, `"error"`) || !strings.Contains(body, "did not arrive") {
			t.Errorf("%s with a stalled body: %d %s, want 408 with a JSON error", req, resp.StatusCode, body)
		}
	}
	if st, _ := do(t, "HEAD", srv.URL+"/v1/stream/slowds", "", nil); st != http.StatusNotFound {
		t.Errorf("a stalled Durable Streams PUT created its stream: %d", st)
	}
	info := decodeJSON[hub.ChannelInfo](t, mustGet(t, srv.URL+"/channels/slow"))
	if info.LastSeq != 0 {
		t.Errorf("a stalled append was appended: %+v", info)
	}
}

// TestBodyTimeoutSparesStreams: the body deadline is lifted once the body
// is in, so a streaming response that lasts far longer is not cut.
func TestBodyTimeoutSparesStreams(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{Server: func(c *ws.ServerConfig) { c.BodyTimeout = 20 * time.Millisecond }})
	// 10 lines at 40 per second: 250 ms, over ten body timeouts.
	st, b := do(t, "POST", srv.URL+"/?freq=40&max=10", "text/plain", []byte("long"))
	if st != http.StatusOK || string(b) != generatorContent("long", 10) {
		t.Fatalf("POST / stream: %d %q, want the 10 lines", st, b)
	}
}

// TestPersistWaitTimeout: with the database refusing writes, an append
// that waits for persistence gets 504 after the persist-wait timeout with
// its seq, and that message is persisted once the database is back.
func TestPersistWaitTimeout(t *testing.T) {
	flaky := &flakyStore{}
	srv := wstest.Start(t, wstest.Options{
		PersistInterval: 5 * time.Millisecond,
		BatchWriter:     func(w persist.BatchWriter) persist.BatchWriter { flaky.dst = w; return flaky },
		Hub:             func(c *hub.Config) { c.PersistWaitTimeout = 100 * time.Millisecond },
	})
	createChannel(t, srv.URL, "pw")
	appendMsg(t, srv.URL, "pw", "first")
	flaky.down.Store(true)
	st, b := do(t, "POST", srv.URL+"/channels/pw/messages?wait=persisted", "text/plain", []byte("second"))
	if st != http.StatusGatewayTimeout {
		t.Fatalf("wait=persisted with the database down: %d %s, want 504", st, b)
	}
	got := decodeJSON[struct {
		Error string
		Seq   int64
	}](t, b)
	if got.Seq != 2 || got.Error == "" {
		t.Fatalf("504 body %s: want seq 2 and an error", b)
	}
	flaky.down.Store(false)
	wstest.WaitFor(t, 10*time.Second, "seq 2 persisted", func() bool {
		return decodeJSON[hub.ChannelInfo](t, mustGet(t, srv.URL+"/channels/pw")).PersistedSeq == 2
	})
	msgs, err := srv.Store.Messages(context.Background(), "pw", 1, 10)
	if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "second" {
		t.Fatalf("stored after seq 1: %v %v, want the message that timed out", msgs, err)
	}
}

// TestStoreTimeoutHungDatabase: with PostgreSQL's tables locked, so that
// every query hangs, each request path that needs the store answers 503
// with Retry-After within the store timeout instead of hanging, and all
// works again once the lock is gone.
func TestStoreTimeoutHungDatabase(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{RetainMessages: 1, Hub: func(c *hub.Config) { c.StoreTimeout = time.Second }})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	createChannel(t, srv.URL, "hung")
	for i := range 3 {
		appendMsg(t, srv.URL, "hung", fmt.Sprint(i))
	}
	wstest.WaitFor(t, 10*time.Second, "persisted", func() bool {
		return decodeJSON[hub.ChannelInfo](t, mustGet(t, srv.URL+"/channels/hung")).PersistedSeq == 3
	})
	// A channel with no actor: the first append takes it over.
	if _, err := srv.Store.CreateChannel(ctx, "cold", nil); err != nil {
		t.Fatal(err)
	}

	locker, err := pgx.Connect(ctx, srv.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(context.Background())
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE channels, messages IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second} // a hang fails the test
	requests := []struct{ method, path, body string }{
		{"POST", "/channels", `{"id":"new"}`},
		{"GET", "/channels/hung", ""},
		{"GET", "/channels", ""},
		{"GET", "/channels/hung/messages?from=0", ""},
		{"POST", "/channels/cold/messages", "x"},
		{"GET", "/?id=cold", ""},
		{"PUT", "/v1/stream/new", ""},
		{"GET", "/v1/stream/hung", ""},
	}
	for _, r := range requests {
		req, _ := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(r.body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s with the database hung: %v", r.method, r.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "did not answer in time") {
			t.Errorf("%s %s with the database hung: %d %s (Retry-After %q), want 503 saying the database did not answer",
				r.method, r.path, resp.StatusCode, b, resp.Header.Get("Retry-After"))
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	createChannel(t, srv.URL, "new")
	if seq := appendMsg(t, srv.URL, "cold", "x"); seq != 1 {
		t.Fatalf("append to cold after the lock: seq %d", seq)
	}
	msgs := decodeJSON[struct{ Messages []struct{ Data string } }](t, mustGet(t, srv.URL+"/channels/hung/messages?from=0"))
	if len(msgs.Messages) != 3 {
		t.Fatalf("history after the lock: %+v", msgs)
	}
}

// TestStalledBodies: 2000 clients that send headers and part of a body,
// then nothing, all get 408 once the body timeout passes, and the server
// serves other clients meanwhile: stalled bodies hold nothing for long.
func TestStalledBodies(t *testing.T) {
	const n = 2000
	srv := wstest.Start(t, wstest.Options{Server: func(c *ws.ServerConfig) { c.BodyTimeout = time.Second }})
	createChannel(t, srv.URL, "stalled")
	head := "POST /channels/stalled/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial"
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	if seq := appendMsg(t, srv.URL, "stalled", "meanwhile"); seq != 1 {
		t.Fatalf("an append among stalled bodies: seq %d", seq)
	}
	for i, c := range conns {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("stalled body %d: no answer: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("stalled body %d: %d, want 408", i, resp.StatusCode)
		}
	}
	if info := decodeJSON[hub.ChannelInfo](t, mustGet(t, srv.URL+"/channels/stalled")); info.LastSeq != 1 {
		t.Fatalf("stalled bodies were appended: %+v", info)
	}
}
