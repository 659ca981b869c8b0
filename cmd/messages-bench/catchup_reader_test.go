package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/ws/wire"
)

// scriptedServer answers every WebSocket with the same frames, then closes.
func scriptedServer(t *testing.T, frames [][]byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for _, f := range frames {
			if err := c.Write(r.Context(), websocket.MessageText, f); err != nil {
				return
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// batch encodes messages first..first+len(data)-1 as one frame.
func batch(first int64, data ...string) []byte {
	return wire.AppendRun(nil, first, len(data), func(i int) (int64, []byte) { return 1, []byte(data[i]) })
}

// TestReadCatchupChecksRepeatedFrames: readers that receive frames another
// reader already checked still find every gap, duplicate and wrong message:
// a known frame is only taken as checked at the seq it was checked at.
func TestReadCatchupChecksRepeatedFrames(t *testing.T) {
	want := []string{"a\n", "b\n", "c\n", "d\n"}
	hello := wire.AppendHello(nil, wire.Frame{Channel: "c", Epoch: "e", LastSeq: 4})
	end := wire.AppendSeq(nil, wire.FrameEnd, 4)
	for _, tc := range []struct {
		name   string
		frames [][]byte
		kind   string // the problem every reader finds; "" for none
	}{
		{"good", [][]byte{hello, batch(1, "a\n", "b\n"), batch(3, "c\n", "d\n"), end}, ""},
		{"repeated", [][]byte{hello, batch(1, "a\n", "b\n"), batch(1, "a\n", "b\n"), batch(3, "c\n", "d\n"), end}, kindDuplicate},
		{"replayed", [][]byte{hello, batch(1, "a\n", "b\n"), batch(3, "c\n", "d\n"), batch(1, "a\n", "b\n"), end}, kindDuplicate},
		{"gap", [][]byte{hello, batch(3, "c\n", "d\n"), end}, kindGap},
		{"content", [][]byte{hello, batch(1, "a\n", "b\n"), batch(3, "c\n", "x\n"), end}, kindContent},
		{"short", [][]byte{hello, batch(1, "a\n", "b\n"), wire.AppendSeq(nil, wire.FrameEnd, 2)}, kindTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := scriptedServer(t, tc.frames)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			src, err := newSources(url, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer src.close()
			b := &bench{cfg: config{URL: url, URLs: []string{url}}, src: src, st: newStats(time.Minute), stderr: io.Discard, res: &result{}}
			seen := newVerifiedFrames(1 << 20)
			// One reader first, so that the others find its frames known.
			for round, readers := range []int{1, 4} {
				var wg sync.WaitGroup
				for k := range readers {
					wg.Go(func() {
						sem := make(chan struct{}, 1)
						sem <- struct{}{}
						check := &seqChecker{expect: func(seq int64, _ int) (string, bool) {
							if seq < 1 || seq > int64(len(want)) {
								return "", false
							}
							return want[seq-1], true
						}, next: 1}
						_, _, err := readCatchup(ctx, b, "c", k, sem, check, seen)
						p := check.finish(int64(len(want)))
						switch {
						case err != nil && !strings.Contains(err.Error(), "frame at seq"):
							t.Errorf("round %d reader %d: %v", round, k, err)
						case tc.kind == "" && (err != nil || p != nil):
							t.Errorf("round %d reader %d: %v %+v", round, k, err, p)
						case tc.kind != "" && (p == nil || p.Kind != tc.kind):
							t.Errorf("round %d reader %d: problem %+v, want %s", round, k, p, tc.kind)
						}
					})
				}
				wg.Wait()
			}
			if tc.name == "good" && len(seen.m) != 2 {
				t.Errorf("%d frames remembered, want the 2 good ones", len(seen.m))
			}
		})
	}
}

// TestUpgradeTransport: the bench's own handshake transport returns a
// refusal with its body, and gives up on a server that never answers when
// the dial's context ends.
func TestUpgradeTransport(t *testing.T) {
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":"no"}`)
	}))
	defer refuse.Close()
	hc := newWSClient(0, "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, strings.Replace(refuse.URL, "http", "ws", 1)+"/ws", &websocket.DialOptions{HTTPClient: hc})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a refused handshake: %v, %v; want the 403", resp, err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != `{"error":"no"}` {
		t.Fatalf("refusal body %q", b)
	}

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // holds the connection, never answers
		}
	}()
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if _, _, err := websocket.Dial(short, "ws://"+silent.Addr().String()+"/ws", &websocket.DialOptions{HTTPClient: hc}); err == nil {
		t.Fatal("a handshake with a silent server succeeded")
	}
	if ctx.Err() != nil {
		t.Fatal("the handshake outlived its context")
	}
}
