package ws_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/ws/wire"
)

// rawSub is a subscription read frame by frame with a plain WebSocket, as
// an independent client would, checking the protocol as it goes.
type rawSub struct {
	t     testing.TB
	conn  *websocket.Conn
	hello wire.Frame
	last  int64
	data  []string // data[i] is seq from+1+i
	from  int64
	live  int64 // seq of the live frame, -1 before
	end   int64 // seq of the end frame, -1 before
}

func wsURL(base, id string, from int64, epoch string) string {
	u := strings.Replace(base, "http://", "ws://", 1) + "/ws?id=" + url.QueryEscape(id) + fmt.Sprintf("&from=%d", from)
	if epoch != "" {
		u += "&epoch=" + epoch
	}
	return u
}

func dialRaw(ctx context.Context, t testing.TB, base, id string, from int64, epoch string) *rawSub {
	t.Helper()
	c, _, err := websocket.Dial(ctx, wsURL(base, id, from, epoch), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", id, err)
	}
	c.SetReadLimit(16 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &rawSub{t: t, conn: c, last: from, from: from, live: -1, end: -1}
}

// next reads one frame and applies it; it returns the frame.
func (s *rawSub) next(ctx context.Context) (wire.Frame, error) {
	typ, b, err := s.conn.Read(ctx)
	if err != nil {
		return wire.Frame{}, err
	}
	if typ != websocket.MessageText {
		return wire.Frame{}, fmt.Errorf("got a binary message")
	}
	if !utf8.Valid(b) {
		// A strict client closes the connection with 1007 here.
		return wire.Frame{}, fmt.Errorf("got a text message that is not valid UTF-8: %q", b)
	}
	f, err := wire.DecodeFrame(b)
	if err != nil {
		return wire.Frame{}, err
	}
	switch f.Type {
	case wire.FrameHello:
		if s.hello.Type != "" {
			return f, fmt.Errorf("second hello")
		}
		s.hello = f
	case wire.FrameMessage, wire.FrameBatch:
		if s.hello.Type == "" {
			return f, fmt.Errorf("%s before hello", f.Type)
		}
		if f.Seq != s.last+1 {
			return f, fmt.Errorf("%s frame starts at seq %d, expected %d", f.Type, f.Seq, s.last+1)
		}
		s.data = append(s.data, f.Data...)
		s.last += int64(len(f.Data))
	case wire.FrameLive:
		if s.live >= 0 {
			return f, fmt.Errorf("second live frame")
		}
		if f.Seq != s.last {
			return f, fmt.Errorf("live at %d after seq %d", f.Seq, s.last)
		}
		s.live = f.Seq
	case wire.FrameEnd:
		if f.Seq != s.last {
			return f, fmt.Errorf("end at %d after seq %d", f.Seq, s.last)
		}
		s.end = f.Seq
	}
	return f, nil
}

// readToEnd reads until the end frame and the normal close.
func (s *rawSub) readToEnd(ctx context.Context) error {
	for s.end < 0 {
		f, err := s.next(ctx)
		if err != nil {
			return err
		}
		if f.Type == wire.FrameError {
			return fmt.Errorf("error frame: %s: %s", f.Code, f.Message)
		}
	}
	_, _, err := s.conn.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		return fmt.Errorf("after end: want close 1000, got %v", err)
	}
	return nil
}

// readUntil reads until seq n was received.
func (s *rawSub) readUntil(ctx context.Context, n int64) error {
	for s.last < n {
		f, err := s.next(ctx)
		if err != nil {
			return err
		}
		if f.Type == wire.FrameError || f.Type == wire.FrameEnd {
			return fmt.Errorf("unexpected %s frame at seq %d: %s", f.Type, s.last, f.Message)
		}
	}
	return nil
}

// expectLines checks data is exactly the generator's lines from+1..n.
func expectLines(t testing.TB, who, id string, from int64, data []string, n int64) {
	t.Helper()
	if int64(len(data)) != n-from {
		t.Errorf("%s: got %d messages after %d, want %d", who, len(data), from, n-from)
	}
	for i, d := range data {
		want := fmt.Sprintf("%d: %s\n", from+int64(i)+1, id)
		if d != want {
			t.Errorf("%s: seq %d = %q, want %q", who, from+int64(i)+1, d, want)
			return
		}
	}
}

func generatorContent(id string, n int64) string {
	var b strings.Builder
	for i := int64(1); i <= n; i++ {
		fmt.Fprintf(&b, "%d: %s\n", i, id)
	}
	return b.String()
}

// requestTimeout bounds every request of do, body included, so that a
// response that never ends fails the test in seconds rather than hanging
// until the package timeout.
const requestTimeout = 20 * time.Second

// do sends a request and returns status and body.
func do(t testing.TB, method, u, contentType string, body []byte) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp.StatusCode, b
}

func decodeJSON[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func createGenerator(t testing.TB, base, id string, freq float64, max int64) {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"generator":{"freq":%v,"max":%d}}`, id, freq, max)
	st, b := do(t, "POST", base+"/channels", "application/json", []byte(body))
	if st != http.StatusCreated {
		t.Fatalf("create %s: %d %s", id, st, b)
	}
}

func createChannel(t testing.TB, base, id string) {
	t.Helper()
	st, b := do(t, "POST", base+"/channels", "application/json", []byte(fmt.Sprintf(`{"id":%q}`, id)))
	if st != http.StatusCreated {
		t.Fatalf("create %s: %d %s", id, st, b)
	}
}

func appendMsg(t testing.TB, base, id, data string) int64 {
	t.Helper()
	st, b := do(t, "POST", base+"/channels/"+id+"/messages", "text/plain", []byte(data))
	if st != http.StatusOK {
		t.Fatalf("append to %s: %d %s", id, st, b)
	}
	return decodeJSON[struct{ Seq int64 }](t, b).Seq
}
