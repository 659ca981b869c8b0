package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/client"
	"github.com/messages-server/messages/ws/wire"
	"github.com/messages-server/messages/ws/wstest"
)

// scriptConn is one scripted server connection.
type scriptConn struct {
	t     *testing.T
	c     *websocket.Conn
	query url.Values
	n     int // connection number, from 0
}

// send writes frames as text messages.
func (sc *scriptConn) send(frames ...string) {
	sc.t.Helper()
	for _, f := range frames {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := sc.c.Write(ctx, websocket.MessageText, []byte(f))
		cancel()
		if err != nil {
			sc.t.Errorf("server write %s: %v", f, err)
			return
		}
	}
}

// waitClose waits for the client to close the connection.
func (sc *scriptConn) waitClose() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := sc.c.Read(ctx); err != nil {
			return
		}
	}
}

// closeWith sends an error-free close with status code.
func (sc *scriptConn) closeWith(code websocket.StatusCode) {
	_ = sc.c.Close(code, "")
}

// scriptServer serves /ws with one script call per connection. A script
// that returns without closing leaves the connection to be closed
// abruptly. It returns the base URL and the queries the server saw.
func scriptServer(t *testing.T, script func(sc *scriptConn)) (string, func() []url.Values) {
	t.Helper()
	var mu sync.Mutex
	var queries []url.Values
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		n := len(queries)
		queries = append(queries, r.URL.Query())
		mu.Unlock()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer c.CloseNow()
		script(&scriptConn{t: t, c: c, query: r.URL.Query(), n: n})
	}))
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return srv.URL, func() []url.Values {
		mu.Lock()
		defer mu.Unlock()
		return append([]url.Values(nil), queries...)
	}
}

// subscribe subscribes and closes the subscription at cleanup.
func subscribe(t *testing.T, base, channel string, opts client.Options) *client.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := client.Subscribe(ctx, base, channel, opts)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// drain reads events until an error, and returns them as compact strings
// ("hello:0", "message:1:data", "live:3", "end:5") with the final error.
func drain(t *testing.T, s *client.Subscription) ([]string, error) {
	t.Helper()
	var got []string
	for i := 0; i < 1000; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		e, err := s.Next(ctx)
		cancel()
		if err != nil {
			return got, err
		}
		switch e.Kind {
		case client.EventMessage:
			if e.Received.IsZero() {
				t.Errorf("message %d without a receive time", e.Seq)
			}
			got = append(got, fmt.Sprintf("message:%d:%s:%d", e.Seq, e.Data, e.Time))
		case client.EventHello:
			got = append(got, fmt.Sprintf("hello:%d:%s", e.Seq, e.Hello.Epoch))
		default:
			got = append(got, fmt.Sprintf("%s:%d", e.Kind, e.Seq))
		}
	}
	t.Fatal("more than 1000 events")
	return nil, nil
}

func hello(channel, epoch string, from int64) string {
	return fmt.Sprintf(`{"type":"hello","channel":%q,"epoch":%q,"from":%d,"last_seq":%d,"persisted_seq":0,"open":true}`,
		channel, epoch, from, from)
}

func msg(seq int64, data string) string {
	return fmt.Sprintf(`{"type":"message","seq":%d,"time":%d,"data":%q}`, seq, 1000+seq, data)
}

func equal(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
}

func TestClientSplitsBatchesAndEnds(t *testing.T) {
	base, queries := scriptServer(t, func(sc *scriptConn) {
		sc.send(hello("c1", "7", 0),
			`{"type":"batch","seq":1,"time":[11,12,13],"data":["a\n","b\n","c\n"]}`,
			msg(4, "d\n"),
			`{"type":"live","seq":4}`,
			msg(5, "é\n"),
			`{"type":"batch","seq":6,"time":[16,17],"data":["f","g"]}`,
			`{"type":"end","seq":7}`)
		sc.closeWith(websocket.StatusNormalClosure)
	})
	s := subscribe(t, base, "c1", client.Options{})
	got, err := drain(t, s)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("final error %v, want io.EOF", err)
	}
	equal(t, got, []string{"hello:0:7", "message:1:a\n:11", "message:2:b\n:12", "message:3:c\n:13",
		"message:4:d\n:1004", "live:4", "message:5:é\n:1005", "message:6:f:16", "message:7:g:17", "end:7"})
	if s.LastSeq() != 7 || s.Epoch() != "7" {
		t.Errorf("LastSeq, Epoch = %d, %q; want 7, 7", s.LastSeq(), s.Epoch())
	}
	if _, err := s.Next(context.Background()); !errors.Is(err, io.EOF) {
		t.Errorf("Next after end: %v, want io.EOF", err)
	}
	q := queries()
	if len(q) != 1 || q[0].Get("id") != "c1" || q[0].Get("from") != "0" || q[0].Has("epoch") {
		t.Errorf("queries %v", q)
	}
}

func TestClientFromAndEpoch(t *testing.T) {
	base, queries := scriptServer(t, func(sc *scriptConn) {
		sc.send(hello("a:b.c-d_e", "3", 40), msg(41, "x"), `{"type":"end","seq":41}`)
		sc.closeWith(websocket.StatusNormalClosure)
	})
	s := subscribe(t, base+"/", "a:b.c-d_e", client.Options{From: 40, Epoch: "3"})
	got, err := drain(t, s)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("final error %v", err)
	}
	equal(t, got, []string{"hello:40:3", "message:41:x:1041", "end:41"})
	q := queries()
	if len(q) != 1 || q[0].Get("id") != "a:b.c-d_e" || q[0].Get("from") != "40" || q[0].Get("epoch") != "3" {
		t.Errorf("queries %v", q)
	}
}

// TestClientProtocolErrors checks that the client verifies the stream
// itself: every broken script must end in a *ProtocolError naming the
// expected and received seq.
func TestClientProtocolErrors(t *testing.T) {
	tests := []struct {
		name          string
		from          int64
		frames        []string
		expected, got int64
		reason        string
		events        int // events delivered before the error
	}{
		{"gap", 0, []string{hello("c", "1", 0), msg(1, "a"), msg(3, "c")}, 2, 3, "gap", 2},
		{"gap in batch", 0, []string{hello("c", "1", 0), `{"type":"batch","seq":1,"time":[1,2],"data":["a","b"]}`, msg(4, "d")}, 3, 4, "gap", 3},
		{"duplicate", 0, []string{hello("c", "1", 0), msg(1, "a"), msg(2, "b"), msg(2, "b")}, 3, 2, "duplicate", 3},
		{"overlapping batch", 0, []string{hello("c", "1", 0), msg(1, "a"), `{"type":"batch","seq":1,"time":[1,2],"data":["a","b"]}`}, 2, 1, "duplicate", 2},
		{"first message not from+1", 5, []string{hello("c", "1", 5), msg(5, "e")}, 6, 5, "duplicate", 1},
		{"hello from", 5, []string{hello("c", "1", 4)}, 5, 4, "hello with another from", 0},
		{"live seq", 0, []string{hello("c", "1", 0), msg(1, "a"), `{"type":"live","seq":2}`}, 1, 2, "live frame after another seq", 2},
		{"end seq", 0, []string{hello("c", "1", 0), msg(1, "a"), `{"type":"end","seq":3}`}, 1, 3, "end frame after another seq", 2},
		{"message before hello", 0, []string{msg(1, "a")}, 0, 0, "message frame before hello", 0},
		{"second hello", 0, []string{hello("c", "1", 0), hello("c", "1", 0)}, 0, 0, "second hello", 1},
		{"other channel", 0, []string{hello("d", "1", 0)}, 0, 0, `hello for channel "d"`, 0},
		{"bad frame", 0, []string{hello("c", "1", 0), `{"type":"message","seq":1}`}, 0, 0, "message time", 1},
		{"unknown frame", 0, []string{hello("c", "1", 0), `{"type":"gossip"}`}, 0, 0, "unknown type", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, _ := scriptServer(t, func(sc *scriptConn) {
				sc.send(tt.frames...)
				sc.waitClose()
			})
			// Resume must not hide protocol errors.
			s := subscribe(t, base, "c", client.Options{From: tt.from, Resume: true})
			got, err := drain(t, s)
			var pe *client.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T), want *client.ProtocolError; events %q", err, err, got)
			}
			if pe.Expected != tt.expected || pe.Got != tt.got || !strings.Contains(pe.Reason, tt.reason) || pe.Channel != "c" {
				t.Errorf("got %+v, want expected %d got %d reason %q", pe, tt.expected, tt.got, tt.reason)
			}
			if len(got) != tt.events {
				t.Errorf("%d events before the error, want %d: %q", len(got), tt.events, got)
			}
			if _, err2 := s.Next(context.Background()); err2 != err {
				t.Errorf("second Next: %v, want the same error", err2)
			}
		})
	}
}

func TestClientServerErrors(t *testing.T) {
	tests := []struct {
		name    string
		script  func(sc *scriptConn)
		code    string
		lastSeq int64
		reset   bool
		deleted bool
	}{
		{"not found frame", func(sc *scriptConn) {
			sc.send(`{"type":"error","code":"not_found","message":"no channel c"}`)
			sc.closeWith(4404)
		}, wire.CodeNotFound, 0, false, false},
		{"deleted after messages", func(sc *scriptConn) {
			sc.send(hello("c", "1", 0), msg(1, "a"), `{"type":"error","code":"deleted","message":"channel c was deleted"}`)
			sc.closeWith(4410)
		}, wire.CodeDeleted, 0, false, true},
		{"deleted close code only", func(sc *scriptConn) {
			sc.send(hello("c", "1", 0))
			sc.closeWith(4410)
		}, wire.CodeDeleted, 0, false, true},
		{"reset frame", func(sc *scriptConn) {
			sc.send(`{"type":"error","code":"reset","message":"restarted","last_seq":12}`)
			sc.closeWith(4409)
		}, wire.CodeReset, 12, true, false},
		{"error after messages", func(sc *scriptConn) {
			sc.send(hello("c", "1", 0), msg(1, "a"), `{"type":"error","code":"bad_request","message":"no"}`)
			sc.closeWith(4400)
		}, wire.CodeBadRequest, 0, false, false},
		{"close code only", func(sc *scriptConn) {
			sc.send(hello("c", "1", 0))
			sc.closeWith(4404)
		}, wire.CodeNotFound, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, queries := scriptServer(t, tt.script)
			s := subscribe(t, base, "c", client.Options{Resume: true, ResumeMinBackoff: time.Millisecond})
			_, err := drain(t, s)
			var se *client.ServerError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T), want *client.ServerError", err, err)
			}
			if se.Code != tt.code || se.LastSeq != tt.lastSeq || errors.Is(err, client.ErrReset) != tt.reset ||
				errors.Is(err, client.ErrDeleted) != tt.deleted {
				t.Errorf("got %+v (is reset %v, deleted %v), want code %s last_seq %d reset %v deleted %v", se,
					errors.Is(err, client.ErrReset), errors.Is(err, client.ErrDeleted), tt.code, tt.lastSeq, tt.reset, tt.deleted)
			}
			if n := len(queries()); n != 1 {
				t.Errorf("%d connections, want 1: these errors are not retried", n)
			}
		})
	}
}

func TestClientRefusedHandshake(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"channel nope not found"}`)
	}))
	t.Cleanup(srv.Close)
	_, err := client.Subscribe(context.Background(), srv.URL, "nope", client.Options{})
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != wire.CodeNotFound || se.Message != "channel nope not found" {
		t.Fatalf("error %v, want a not_found *client.ServerError with the body's message", err)
	}
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusGone)
	}))
	t.Cleanup(gone.Close)
	if _, err := client.Subscribe(context.Background(), gone.URL, "c", client.Options{}); !errors.Is(err, client.ErrDeleted) {
		t.Errorf("410 handshake: %v, want ErrDeleted", err)
	}
	if _, err := client.Subscribe(context.Background(), "ftp://x", "c", client.Options{}); err == nil {
		t.Error("ftp url accepted")
	}
}

// TestClientResume drops the connection twice on the server side, once
// abruptly and once with going away: the client must come back each time
// with from = the last seq it received and the epoch, and deliver every
// message exactly once.
func TestClientResume(t *testing.T) {
	base, queries := scriptServer(t, func(sc *scriptConn) {
		switch sc.n {
		case 0:
			sc.send(hello("c", "5", 0), `{"type":"batch","seq":1,"time":[1,2,3],"data":["a","b","c"]}`)
			// Returning closes the TCP connection without a close frame.
		case 1:
			sc.send(hello("c", "5", 3), msg(4, "d"), `{"type":"live","seq":4}`)
			sc.closeWith(websocket.StatusGoingAway)
		case 2:
			sc.send(hello("c", "6", 4), `{"type":"live","seq":4}`, msg(5, "e"), `{"type":"end","seq":5}`)
			sc.closeWith(websocket.StatusNormalClosure)
		default:
			t.Errorf("unexpected connection %d", sc.n)
		}
	})
	s := subscribe(t, base, "c", client.Options{Resume: true, ResumeMinBackoff: time.Millisecond, ResumeMaxBackoff: 10 * time.Millisecond})
	got, err := drain(t, s)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("final error %v; events %q", err, got)
	}
	equal(t, got, []string{"hello:0:5", "message:1:a:1", "message:2:b:2", "message:3:c:3",
		"hello:3:5", "message:4:d:1004", "live:4", "hello:4:6", "live:4", "message:5:e:1005", "end:5"})
	want := []string{"from=0", "epoch=5&from=3", "epoch=5&from=4"}
	q := queries()
	if len(q) != len(want) {
		t.Fatalf("queries %v", q)
	}
	for i, w := range want {
		q[i].Del("id")
		if q[i].Encode() != w {
			t.Errorf("connection %d query %q, want %q", i, q[i].Encode(), w)
		}
	}
}

func TestClientResumeStopsOnReset(t *testing.T) {
	base, _ := scriptServer(t, func(sc *scriptConn) {
		if sc.n == 0 {
			sc.send(hello("c", "1", 0), msg(1, "a"), msg(2, "b"))
			return
		}
		sc.send(`{"type":"error","code":"reset","message":"lost","last_seq":1}`)
		sc.closeWith(4409)
	})
	s := subscribe(t, base, "c", client.Options{Resume: true, ResumeMinBackoff: time.Millisecond})
	got, err := drain(t, s)
	if !errors.Is(err, client.ErrReset) {
		t.Fatalf("error %v, want ErrReset", err)
	}
	equal(t, got, []string{"hello:0:1", "message:1:a:1001", "message:2:b:1002"})
}

func TestClientResumeGivesUp(t *testing.T) {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if !first {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"overloaded"}`)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.Write(context.Background(), websocket.MessageText, []byte(hello("c", "1", 0)))
		c.CloseNow()
	}))
	t.Cleanup(srv.Close)
	s := subscribe(t, srv.URL, "c", client.Options{Resume: true, ResumeAttempts: 3, ResumeMinBackoff: time.Millisecond, ResumeMaxBackoff: time.Millisecond})
	_, err := drain(t, s)
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != wire.CodeUnavailable || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Fatalf("error %v, want giving up on unavailable", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n != 4 {
		t.Errorf("%d handshakes, want 1 + 3 attempts", n)
	}
}

func TestClientDropWithoutResume(t *testing.T) {
	base, queries := scriptServer(t, func(sc *scriptConn) {
		sc.send(hello("c", "1", 0), msg(1, "a"))
		sc.closeWith(websocket.StatusGoingAway)
	})
	s := subscribe(t, base, "c", client.Options{})
	got, err := drain(t, s)
	var pe *client.ProtocolError
	var se *client.ServerError
	if err == nil || errors.Is(err, io.EOF) || errors.As(err, &pe) || errors.As(err, &se) {
		t.Fatalf("error %v, want a connection error", err)
	}
	if websocket.CloseStatus(err) != websocket.StatusGoingAway || !strings.Contains(err.Error(), "after seq 1") {
		t.Errorf("error %v does not carry the going away status and the last seq", err)
	}
	equal(t, got, []string{"hello:0:1", "message:1:a:1001"})
	if len(queries()) != 1 {
		t.Errorf("redialed without Resume")
	}
}

func TestClientReadLimit(t *testing.T) {
	base, _ := scriptServer(t, func(sc *scriptConn) {
		sc.send(hello("c", "1", 0), msg(1, strings.Repeat("x", 2000)))
		sc.waitClose()
	})
	s := subscribe(t, base, "c", client.Options{ReadLimit: 1024, Resume: true})
	_, err := drain(t, s)
	if !errors.Is(err, websocket.ErrMessageTooBig) {
		t.Fatalf("error %v, want ErrMessageTooBig", err)
	}
}

// TestClientNextContextAndClose checks that an expired Next context leaves
// the subscription working, that the dial context does not bound the
// connection, and that Close unblocks a waiting Next.
func TestClientNextContextAndClose(t *testing.T) {
	release := make(chan struct{})
	serverDone := make(chan struct{})
	base, _ := scriptServer(t, func(sc *scriptConn) {
		defer close(serverDone)
		sc.send(hello("c", "1", 0))
		<-release
		sc.send(msg(1, "a"))
		sc.waitClose()
	})
	dialCtx, cancelDial := context.WithCancel(context.Background())
	s, err := client.Subscribe(dialCtx, base, "c", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cancelDial()
	if e, err := s.Next(context.Background()); err != nil || e.Kind != client.EventHello {
		t.Fatalf("first event %+v, %v", e, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err = s.Next(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with an expiring context: %v", err)
	}
	close(release)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	e, err := s.Next(ctx)
	cancel()
	if err != nil || e.Kind != client.EventMessage || e.Seq != 1 {
		t.Fatalf("event after a timed out Next: %+v, %v", e, err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background())
		errc <- err
	}()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, client.ErrSubscriptionClosed) {
			t.Errorf("Next after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock Next")
	}
	select {
	case <-serverDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not see the close")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestClientAgainstServer reads a generated channel from a real server
// while the server drops every connection twice; with Resume the client
// must deliver every line exactly once, in order, then io.EOF.
func TestClientAgainstServer(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	const lines = 60
	body := fmt.Sprintf(`{"id":"gen","generator":{"freq":300,"max":%d}}`, lines)
	resp, err := http.Post(srv.URL+"/channels", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %s", resp.Status)
	}
	s := subscribe(t, srv.URL, "gen", client.Options{Resume: true, ResumeMinBackoff: time.Millisecond, ResumeMaxBackoff: 20 * time.Millisecond})
	var content strings.Builder
	hellos, drops := 0, 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		e, err := s.Next(ctx)
		cancel()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after seq %d: %v", s.LastSeq(), err)
		}
		switch e.Kind {
		case client.EventHello:
			hellos++
		case client.EventMessage:
			content.WriteString(e.Data)
			if (e.Seq == 10 || e.Seq == 30) && drops < 2 {
				drops++
				srv.DropConnections()
			}
		}
	}
	var want strings.Builder
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "%d: gen\n", i)
	}
	if content.String() != want.String() {
		t.Errorf("content:\n%s\nwant:\n%s", content.String(), want.String())
	}
	if hellos < 2 {
		t.Errorf("%d hellos: the drops did not cause a resume", hellos)
	}
}

// TestClientToken subscribes to a server that requires tokens: without one,
// or with one lacking the right, Subscribe fails with ErrUnauthorized or
// ErrForbidden; with Options.Token the stream is delivered, and a redial
// after a drop sends the token again.
func TestClientToken(t *testing.T) {
	secret := []byte("a test secret that is at least 32 bytes long")
	a, err := auth.New(context.Background(), auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	srv := wstest.Start(t, wstest.Options{Backend: "sqlite", Auth: a})
	tok := func(c auth.Claims) string {
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
		s, err := auth.SignHS256(secret, &c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	admin := tok(auth.Claims{Admin: true})
	req, _ := http.NewRequest("POST", srv.URL+"/channels", strings.NewReader(`{"id":"room-1"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %v %v", resp, err)
	}
	resp.Body.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.Subscribe(ctx, srv.URL, "room-1", client.Options{}); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("no token: %v, want ErrUnauthorized", err)
	}
	if _, err := client.Subscribe(ctx, srv.URL, "room-1", client.Options{Token: tok(auth.Claims{Subscribe: []string{"other"}})}); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("a token for another channel: %v, want ErrForbidden", err)
	}
	sub, err := client.Subscribe(ctx, srv.URL, "room-1", client.Options{Token: tok(auth.Claims{Subscribe: []string{"room-*"}}), Resume: true})
	if err != nil {
		t.Fatalf("with a token: %v", err)
	}
	defer sub.Close()
	next := func(want client.EventKind) client.Event {
		t.Helper()
		ev, err := sub.Next(ctx)
		if err != nil || ev.Kind != want {
			t.Fatalf("Next = %v %v, want %v", ev.Kind, err, want)
		}
		return ev
	}
	next(client.EventHello)
	next(client.EventLive)
	srv.DropConnections()
	next(client.EventHello) // redialed, with the token
	next(client.EventLive)
}
