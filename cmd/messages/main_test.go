package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/messages-server/messages/internal/leaktest"
)

// waitTimeout bounds every wait of these tests.
const waitTimeout = 30 * time.Second

// syncBuffer is a bytes.Buffer safe for the server's log writes and the
// test's reads at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// noEnv is a getenv with nothing set.
func noEnv(string) string { return "" }

func TestDefaultDatabaseIsSQLite(t *testing.T) {
	c, err := parseConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.databaseURL != "sqlite:./data/messages.db" {
		t.Fatalf("default database URL = %q, want sqlite:./data/messages.db", c.databaseURL)
	}
	pg := "postgres://u@db:5432/messages"
	c, err = parseConfig(nil, func(k string) string {
		if k == "DATABASE_URL" {
			return pg
		}
		return ""
	}, io.Discard)
	if err != nil || c.databaseURL != pg {
		t.Fatalf("DATABASE_URL=%s gives %q, %v", pg, c.databaseURL, err)
	}
}

// server is run running in a goroutine.
type server struct {
	base   string // http://127.0.0.1:port
	log    *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// start runs the server with args until stop or the end of t.
func start(t *testing.T, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{log: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan string, 1)
	// A loaded machine is slow, not hung: a generous store timeout.
	args = append([]string{"-addr", "127.0.0.1:0", "-persist-interval", "10ms", "-store-timeout", "30s"}, args...)
	go func() { s.done <- run(ctx, args, noEnv, s.log, ready) }()
	t.Cleanup(func() { s.stop(t) })
	select {
	case addr := <-ready:
		s.base = "http://" + addr
	case err := <-s.done:
		s.done <- err
		t.Fatalf("run returned before serving: %v\n%s", err, s.log)
	case <-time.After(waitTimeout):
		t.Fatalf("server not ready in time\n%s", s.log)
	}
	return s
}

// stop cancels the server's context and waits for a clean, graceful stop.
// It is safe to call more than once.
func (s *server) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok {
			close(s.done)
			if err != nil {
				t.Fatalf("run after cancel = %v, want nil\n%s", err, s.log)
			}
		}
	case <-time.After(waitTimeout):
		t.Fatalf("server did not stop in time\n%s", s.log)
	}
}

// do sends a request and returns the response body, failing t unless the
// status is want.
func do(t *testing.T, method, u, body string, want int) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading: %v", method, u, err)
	}
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d %s, want %d", method, u, resp.StatusCode, b, want)
	}
	return b
}

// appendMessage appends data to channel id, waiting until it is
// persisted, and returns its seq.
func appendMessage(t *testing.T, s *server, id, data string) int64 {
	t.Helper()
	var r struct{ Seq int64 }
	b := do(t, "POST", s.base+"/channels/"+id+"/messages?wait=persisted", data, http.StatusOK)
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("append response %s: %v", b, err)
	}
	return r.Seq
}

// history returns the stored messages of channel id, as "seq:data".
func history(t *testing.T, s *server, id string) []string {
	t.Helper()
	var r struct {
		Messages []struct {
			Seq  int64
			Data string
		}
	}
	b := do(t, "GET", s.base+"/channels/"+id+"/messages?from=0", "", http.StatusOK)
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("history response %s: %v", b, err)
	}
	var got []string
	for _, m := range r.Messages {
		got = append(got, fmt.Sprintf("%d:%s", m.Seq, m.Data))
	}
	return got
}

// TestRunSQLite runs the server on a SQLite file that does not exist yet,
// streams a generated channel to the end, stops it gracefully, and starts
// it again on the same file: the history is still there and an open
// channel goes on after its last seq.
func TestRunSQLite(t *testing.T) {
	file := filepath.Join(t.TempDir(), "new dir", "m.db")
	dbURL := (&url.URL{Scheme: "sqlite", Path: file}).String()

	s := start(t, "-database-url", dbURL)
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("database file not created: %v", err)
	}
	logs := s.log.String()
	for _, want := range []string{"store.backend=sqlite", "store.path=\"" + file + "\"", "viewer=http://127.0.0.1:"} {
		if !strings.Contains(logs, want) {
			t.Errorf("start-up log lacks %s:\n%s", want, logs)
		}
	}
	do(t, "POST", s.base+"/channels", `{"id":"gen","generator":{"freq":1000,"max":25}}`, http.StatusCreated)
	var want strings.Builder
	for i := 1; i <= 25; i++ {
		fmt.Fprintf(&want, "%d: gen\n", i)
	}
	if got := string(do(t, "GET", s.base+"/?id=gen", "", http.StatusOK)); got != want.String() {
		t.Fatalf("GET /?id=gen = %q, want %q", got, want.String())
	}
	do(t, "POST", s.base+"/channels", `{"id":"chat"}`, http.StatusCreated)
	for i, m := range []string{"a", "b"} {
		if seq := appendMessage(t, s, "chat", m); seq != int64(i)+1 {
			t.Fatalf("append %q: seq %d, want %d", m, seq, i+1)
		}
	}
	s.stop(t)
	if !strings.Contains(s.log.String(), "everything persisted") {
		t.Errorf("shutdown log lacks the flush confirmation:\n%s", s.log)
	}

	s = start(t, "-database-url", dbURL)
	if got := string(do(t, "GET", s.base+"/?id=gen", "", http.StatusOK)); got != want.String() {
		t.Fatalf("after restart, GET /?id=gen = %q, want %q", got, want.String())
	}
	if seq := appendMessage(t, s, "chat", "c"); seq != 3 {
		t.Fatalf("after restart, append: seq %d, want 3", seq)
	}
	if got := strings.Join(history(t, s, "chat"), " "); got != "1:a 2:b 3:c" {
		t.Fatalf("after restart, chat history = %s, want 1:a 2:b 3:c", got)
	}
	s.stop(t)
}

func TestRunUnsupportedScheme(t *testing.T) {
	var logs syncBuffer
	err := run(t.Context(), []string{"-addr", "127.0.0.1:0", "-database-url", "mysql://root@localhost/messages"},
		noEnv, &logs, nil)
	want := `unsupported database URL scheme "mysql": use postgres://… or sqlite:…`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("run with a mysql:// URL = %v, want an error with %q", err, want)
	}
}

// TestRunEarlyErrorStopsAndFlushes starts the server on a database with an
// open generator channel on a listen address already taken: run fails
// before it takes anything over (the take-over starts once the server
// listens), and before it returns it stops the writer and the hub, so
// nothing of the server is left running and what the generator appended
// is stored.
func TestRunEarlyErrorStopsAndFlushes(t *testing.T) {
	before := goleak.IgnoreCurrent() // goroutines earlier tests left to unwind
	dbURL := (&url.URL{Scheme: "sqlite", Path: filepath.Join(t.TempDir(), "m.db")}).String()
	s := start(t, "-database-url", dbURL)
	do(t, "POST", s.base+"/channels", `{"id":"gen","generator":{"freq":1000,"max":1000000}}`, http.StatusCreated)
	s.stop(t)

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var logs syncBuffer
	err = run(t.Context(), []string{"-addr", taken.Addr().String(), "-database-url", dbURL, "-persist-interval", "10ms",
		"-log-level", "debug"}, noEnv, &logs, nil)
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("run on a taken address = %v, want a listen error\n%s", err, &logs)
	}
	if strings.Contains(logs.String(), "channel taken over") {
		t.Fatalf("the generator channel was taken over by a server that never listened\n%s", &logs)
	}
	if !strings.Contains(logs.String(), "everything persisted") {
		t.Errorf("run returned without the flush\n%s", &logs)
	}
	http.DefaultClient.CloseIdleConnections()
	if err := leaktest.Find(5*time.Second, before); err != nil {
		t.Fatalf("goroutines of the server still run after run returned: %v", err)
	}

	// What the generator appended is stored without a gap, and it goes on.
	s = start(t, "-database-url", dbURL)
	msgs := history(t, s, "gen")
	if len(msgs) == 0 {
		t.Fatal("no history after restart")
	}
	for i, m := range msgs {
		if want := fmt.Sprintf("%d:%d: gen\n", i+1, i+1); m != want {
			t.Fatalf("history[%d] = %q, want %q", i, m, want)
		}
	}
}
