package ws_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/ws/wstest"
)

// awkwardData are messages that need escaping or care somewhere between
// the HTTP body and the client: JSON's special characters, every ASCII
// control character, the line and paragraph separators that JavaScript
// once refused in strings, and text outside ASCII. Every one is valid
// UTF-8, so the server accepts it.
func awkwardData() []string {
	var ctl strings.Builder
	for c := 0; c < 0x20; c++ {
		ctl.WriteByte(byte(c))
	}
	ctl.WriteByte(0x7f)
	data := []string{
		`"quoted"`, `back\slash`, `\"\\u0000\n`, `{"json":"inside"}`,
		ctl.String(), "\x00", "nul\x00inside", "tab\tline\ncr\r",
		"\u2028", "line\u2028separator\u2029paragraph",
		"héllo wörld — ÆØÅ ß", "日本語のテキスト", "emoji 🎉👩‍👩‍👧 and \U0010FFFF",
		"</script><script>alert(1)</script>", "\ufeffBOM", "a\u0301 combining",
	}
	for c := 0; c < 0x20; c++ {
		data = append(data, fmt.Sprintf("ctl %02x: %c.", c, c))
	}
	return data
}

// TestAwkwardDataEndToEnd appends awkwardData over HTTP and reads it back,
// byte-identical, through every read path: WebSocket frames (checked with
// encoding/json as well as the project's decoder), the text stream GET
// /?id= and the JSON history; first from memory, then, after a restart,
// from the store; on both storage backends.
func TestAwkwardDataEndToEnd(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			want := awkwardData()
			n := int64(len(want))
			// A long interval: nothing is persisted before the close
			// unless asked, so the first reads come from memory.
			srv := wstest.Start(t, wstest.Options{Backend: backend, PersistInterval: time.Hour, RetainMessages: 1000})
			createChannel(t, srv.URL, "awk")
			live := dialRaw(ctx, t, srv.URL, "awk", 0, "")
			if err := readUntilLive(ctx, live); err != nil {
				t.Fatal(err)
			}
			for i, d := range want {
				if seq := appendMsg(t, srv.URL, "awk", d); seq != int64(i+1) {
					t.Fatalf("append %d got seq %d", i+1, seq)
				}
			}
			if err := live.readUntil(ctx, n); err != nil {
				t.Fatal(err)
			}
			checkData(t, "live WebSocket", live.data, want)
			live.conn.CloseNow() // no close handshake to hold up the shutdown
			checkAllPaths(ctx, t, srv.URL, "from memory", want, false)

			if st, b := do(t, "POST", srv.URL+"/channels/awk/close", "", nil); st != 200 {
				t.Fatalf("close: %d %s", st, b)
			}
			srv.Close()
			srv2 := wstest.Start(t, wstest.Options{DatabaseURL: srv.DatabaseURL, RetainMessages: 1})
			stored, err := srv2.Store.Messages(ctx, "awk", 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]string, len(stored))
			for i, m := range stored {
				got[i] = string(m.Data)
			}
			checkData(t, "the store", got, want)
			checkAllPaths(ctx, t, srv2.URL, "from the store after a restart", want, true)
		})
	}
}

// checkAllPaths reads channel awk through the WebSocket, the text stream
// and the history, and compares each with want.
func checkAllPaths(ctx context.Context, t *testing.T, base, when string, want []string, closed bool) {
	t.Helper()
	n := int64(len(want))
	s := dialRaw(ctx, t, base, "awk", 0, "")
	var err error
	if closed {
		err = s.readToEnd(ctx)
	} else {
		err = s.readUntil(ctx, n)
	}
	s.conn.CloseNow()
	if err != nil {
		t.Fatalf("%s: WebSocket: %v", when, err)
	}
	checkData(t, when+": WebSocket", s.data, want)
	checkData(t, when+": WebSocket read with encoding/json", jsonFrames(ctx, t, base, "awk", n), want)

	// The text stream is the concatenation; an open channel's does not
	// end, so read just its length.
	all := strings.Join(want, "")
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(sctx, "GET", base+"/?id=awk", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: GET /?id=: %v", when, err)
	}
	defer resp.Body.Close()
	text := make([]byte, len(all))
	if _, err := io.ReadFull(resp.Body, text); err != nil {
		t.Fatalf("%s: text stream: %v after %q", when, err, text)
	}
	if string(text) != all {
		t.Errorf("%s: text stream differs:\n got %q\nwant %q", when, text, all)
	}
	if closed {
		if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
			t.Errorf("%s: text stream goes on past the content: %q %v", when, rest, err)
		}
	}

	h := decodeJSON[struct {
		Messages []struct {
			Seq  int64
			Data string
		}
	}](t, mustGet(t, base+"/channels/awk/messages?limit=1000"))
	hist := make([]string, len(h.Messages))
	for i, m := range h.Messages {
		hist[i] = m.Data
	}
	checkData(t, when+": JSON history", hist, want)
}

// jsonFrames subscribes to channel id and decodes frames with
// encoding/json, as an independent client would, until it has n messages.
func jsonFrames(ctx context.Context, t *testing.T, base, id string, n int64) []string {
	t.Helper()
	c, _, err := websocket.Dial(ctx, wsURL(base, id, 0, ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(16 << 20)
	var out []string
	for int64(len(out)) < n {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(out), err)
		}
		var f struct {
			Type string
			Seq  int64
			Data json.RawMessage
		}
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("frame %q is not JSON: %v", b, err)
		}
		switch f.Type {
		case "message":
			var d string
			if err := json.Unmarshal(f.Data, &d); err != nil {
				t.Fatalf("message frame %q: %v", b, err)
			}
			out = append(out, d)
		case "batch":
			var d []string
			if err := json.Unmarshal(f.Data, &d); err != nil {
				t.Fatalf("batch frame %q: %v", b, err)
			}
			out = append(out, d...)
		case "error":
			t.Fatalf("error frame %s", b)
		}
	}
	return out
}

func checkData(t *testing.T, who string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d messages, want %d", who, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("%s: seq %d = %q, want %q", who, i+1, got[i], want[i])
		}
	}
}
