package ws_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wstest"
)

// TestReferenceAPI checks POST /?freq=&max= streams exactly the expected
// lines and that GET /?id= during and after the stream is byte-identical.
func TestReferenceAPI(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	const id = "ref-1"
	want := generatorContent(id, 100)
	resp, err := http.Post(srv.URL+"/?freq=200&max=100", "text/plain", strings.NewReader(id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Channel-Id") != id {
		t.Fatalf("POST /: %d, Channel-Id %q", resp.StatusCode, resp.Header.Get("Channel-Id"))
	}
	var wg sync.WaitGroup
	got := make([]string, 4)
	get := func(i int) {
		defer wg.Done()
		r, err := http.Get(srv.URL + "/?id=" + id)
		if err != nil {
			t.Error(err)
			return
		}
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("GET %d: %v", i, err)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("GET %d: content type %q", i, ct)
		}
		got[i] = string(b)
	}
	// Readers during the stream.
	first := make([]byte, 8)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	wg.Add(3)
	for i := 0; i < 3; i++ {
		go get(i)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if orig := string(first) + string(rest); orig != want {
		t.Fatalf("creator's stream:\n%q\nwant\n%q", orig, want)
	}
	wg.Wait()
	// And one after the end.
	wg.Add(1)
	get(3)
	for i, g := range got {
		if g != want {
			t.Errorf("GET /?id= reader %d got %d bytes, want %d identical", i, len(g), len(want))
		}
	}

	// An empty body makes an id.
	r2, err := http.Post(srv.URL+"/?freq=1000&max=3", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	gen := r2.Header.Get("Channel-Id")
	if !hub.ValidID(gen) || string(b) != generatorContent(gen, 3) {
		t.Errorf("generated id %q, content %q", gen, b)
	}
}

// TestReferenceHead checks HEAD /?id= answers the headers of the stream and
// ends, even for an open channel whose stream would not end: the
// connection is free for the next request at once.
func TestReferenceHead(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	// Empty: a GET would wait for the first message with nothing to write.
	createChannel(t, srv.URL, "head")
	// One connection, kept alive: the request after the HEAD reuses it.
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	get := func(method, path string) *http.Response {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v (is the connection still busy with the HEAD?)", method, path, err)
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct {
		id     string
		status int
		ctype  string
	}{
		{"head", http.StatusOK, "text/plain"},
		{"nope", http.StatusNotFound, "application/json"},
	} {
		resp := get(http.MethodHead, "/?id="+tc.id)
		if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) {
			t.Errorf("HEAD /?id=%s: %d %q, want %d %s", tc.id, resp.StatusCode, resp.Header.Get("Content-Type"), tc.status, tc.ctype)
		}
		if resp := get(http.MethodGet, "/channels/head"); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /channels/head after the HEAD: %d", resp.StatusCode)
		}
	}
}

// stallingStore makes history reads of one channel wait until their context
// ends, as a catch-up held up by a slow database would.
type stallingStore struct {
	hub.Store
	id      string
	entered chan struct{} // gets a value when a read starts waiting
}

func (s *stallingStore) Messages(ctx context.Context, id string, after int64, limit int) ([]persist.Message, error) {
	if id != s.id {
		return s.Store.Messages(ctx, id, after, limit)
	}
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestTextStreamShutdown: on a graceful shutdown, text followers (live, or
// still catching up from the store) get a clean end of the response
// promptly, with the trailer Stream-End: shutdown; the stream of a closed
// channel ends with Stream-End: closed.
func TestTextStreamShutdown(t *testing.T) {
	stall := &stallingStore{id: "behind", entered: make(chan struct{}, 1)}
	srv := wstest.Start(t, wstest.Options{
		PersistInterval: time.Millisecond, RetainMessages: 1,
		Store: func(s hub.Store) hub.Store { stall.Store = s; return stall },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	createChannel(t, srv.URL, "done")
	appendMsg(t, srv.URL, "done", "all\n")
	if st, b := do(t, "POST", srv.URL+"/channels/done/close", "", nil); st != 200 {
		t.Fatalf("close: %d %s", st, b)
	}
	resp := follow(ctx, t, srv.URL, "done")
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "all\n" || resp.Trailer.Get("Stream-End") != "closed" {
		t.Fatalf("closed channel: %q %v, trailer %q", b, err, resp.Trailer.Get("Stream-End"))
	}
	resp.Body.Close()

	// A live follower, and one whose catch-up waits on the store.
	createChannel(t, srv.URL, "live")
	appendMsg(t, srv.URL, "live", "one\n")
	live := follow(ctx, t, srv.URL, "live")
	defer live.Body.Close()
	first := make([]byte, 4)
	if _, err := io.ReadFull(live.Body, first); err != nil || string(first) != "one\n" {
		t.Fatalf("live follower: %q %v", first, err)
	}
	createChannel(t, srv.URL, "behind")
	for _, m := range []string{"b1\n", "b2\n"} {
		if st, b := do(t, "POST", srv.URL+"/channels/behind/messages?wait=persisted", "text/plain", []byte(m)); st != 200 {
			t.Fatalf("append: %d %s", st, b)
		}
	}
	behind := follow(ctx, t, srv.URL, "behind")
	defer behind.Body.Close()
	select {
	case <-stall.entered:
	case <-ctx.Done():
		t.Fatal("the catch-up did not read the store")
	}

	shutdownDone := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdownDone <- srv.Handler.Shutdown(sctx)
	}()
	start := time.Now()
	for name, r := range map[string]*http.Response{"live": live, "catching up": behind} {
		rest, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("%s follower: the response did not end cleanly: %v (after %q)", name, err, rest)
			continue
		}
		if end := r.Trailer.Get("Stream-End"); end != "shutdown" {
			t.Errorf("%s follower: trailer Stream-End %q, want shutdown", name, end)
		}
	}
	if err := <-shutdownDone; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the followers ended %v after the shutdown began", d)
	}
}

// follow starts GET /?id= and returns the response once its headers came.
func follow(ctx context.Context, t testing.TB, base, id string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/?id="+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /?id=%s: %v", id, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /?id=%s: %d", id, resp.StatusCode)
	}
	return resp
}
