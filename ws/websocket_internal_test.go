package ws

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wire"
)

// WebSocket opcodes, for the raw client.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// maskedFrame is a final client frame: clients must mask what they send.
func maskedFrame(op byte, payload []byte) []byte {
	if len(payload) > 125 {
		panic("maskedFrame: payload too long for this test client")
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b := []byte{0x80 | op, 0x80 | byte(len(payload))}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// readFrame reads one unmasked server frame.
func readFrame(r io.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("the server masked a frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r, payload)
	return h[0] & 0x0f, payload, err
}

// TestPingPipelinedWithHandshake: a client that sends a ping in the same
// write as its upgrade request gets its pong. Those bytes reach the server
// with the request and sit in net/http's buffer at the hijack; they used to
// be dropped there.
func TestPingPipelinedWithHandshake(t *testing.T) {
	ts := startTestServer(t, hub.Config{}, ServerConfig{PingInterval: time.Hour})
	payload := []byte("are you there?")
	// The deadline bounds every read below: a lost ping shows as no pong
	// by then.
	_, br := rawSubscribe(t, ts, "pipe", maskedFrame(opPing, payload), 10*time.Second)
	for {
		op, b, err := readFrame(br)
		if err != nil {
			t.Fatalf("no pong for the ping sent with the handshake: %v", err)
		}
		switch op {
		case opPong:
			if string(b) != string(payload) {
				t.Fatalf("pong %q, want %q", b, payload)
			}
			return
		case opClose:
			t.Fatalf("closed instead of answering the ping: %q", b)
		}
	}
}

// wsClient reads a subscription on its own goroutine, as every WebSocket
// client must for its pings to get their pongs.
type wsClient struct {
	conn   *websocket.Conn
	frames chan wire.Frame
	err    chan error // the read error that ended the stream
}

func dialTest(t testing.TB, base, id string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, strings.Replace(base, "http://", "ws://", 1)+"/ws?id="+id, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", id, err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	c := &wsClient{conn: conn, frames: make(chan wire.Frame, 64), err: make(chan error, 1)}
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				c.err <- err
				close(c.frames)
				return
			}
			f, err := wire.DecodeFrame(b)
			if err != nil {
				c.err <- err
				close(c.frames)
				return
			}
			c.frames <- f
		}
	}()
	return c
}

// next returns the next frame, failing the test if none comes within 10s.
func (c *wsClient) next(t testing.TB) wire.Frame {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	select {
	case f, ok := <-c.frames:
		if !ok {
			t.Fatalf("stream ended: %v", <-c.err)
		}
		return f
	case <-timeout.C:
		t.Fatal("no frame within 10s")
	}
	return wire.Frame{}
}

// expect reads the next frame and checks its type and seq.
func (c *wsClient) expect(t testing.TB, typ string, seq int64) wire.Frame {
	t.Helper()
	f := c.next(t)
	if f.Type != typ || f.Seq != seq {
		t.Fatalf("got %s frame at seq %d (%s %s), want %s at %d", f.Type, f.Seq, f.Code, f.Message, typ, seq)
	}
	return f
}

// closed waits for the end of the stream and returns its close error.
func (c *wsClient) closed(t testing.TB) error {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return <-c.err
			}
			t.Fatalf("unexpected %s frame at seq %d before the close", f.Type, f.Seq)
		case <-timeout.C:
			t.Fatal("the server did not close within 10s")
		}
	}
}

// TestPingAfterQuiet: a client that pings after a long quiet gets its pong
// and keeps its stream. The server's write deadline used to stay set after
// each write, so once the stream had been idle for longer than the write
// timeout the library's pong write failed and the connection died: with
// the default 10s timeout, every client that pings after 15s of quiet
// (browsers, Python websockets every 20s) lost its stream.
//
// The write timeout is scaled down to 200ms and the quiet periods with it
// (15s and 60s become 300ms and 1.2s). The quiet is waited out on a timer:
// the passing of the deadline is the thing under test, no event marks it.
// Server pings are off so that nothing is written during the quiet.
func TestPingAfterQuiet(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	ts := startTestServer(t, hub.Config{}, ServerConfig{WriteTimeout: writeTimeout, PingInterval: time.Hour})
	ctx := context.Background()
	if _, err := ts.hub.Create(ctx, "quiet", nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.hub.Append(ctx, "quiet", []byte("one"), false); err != nil {
		t.Fatal(err)
	}
	c := dialTest(t, ts.url, "quiet")
	c.expect(t, wire.FrameHello, 0)
	c.expect(t, wire.FrameMessage, 1)
	c.expect(t, wire.FrameLive, 1)
	for i, quiet := range []time.Duration{writeTimeout * 15 / 10, writeTimeout * 6} {
		// The server's last write is done: the client has read it.
		wait := time.NewTimer(quiet)
		<-wait.C
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.conn.Ping(pctx)
		cancel()
		if err != nil {
			t.Fatalf("ping after %v of quiet: %v", quiet, err)
		}
		seq, err := ts.hub.Append(ctx, "quiet", []byte("more"), false)
		if err != nil {
			t.Fatal(err)
		}
		c.expect(t, wire.FrameMessage, int64(i)+2)
		if seq != int64(i)+2 {
			t.Fatalf("append: seq %d", seq)
		}
	}
}

// gapStore is a memStore whose history has lost a message: what a bug or a
// corrupted database would give.
type gapStore struct{ *memStore }

func (s gapStore) Messages(ctx context.Context, id string, after int64, limit int) ([]persist.Message, error) {
	rows, err := s.memStore.Messages(ctx, id, after, limit)
	if len(rows) > 1 {
		rows = append(rows[:1:1], rows[2:]...)
	}
	return rows, err
}

// TestInternalErrorClose: a stream that fails for an unexpected reason
// ends with an error frame "internal" and the close code 4500 with a
// reason, as the protocol documents; it used to end in a bare close that
// clients saw as 1006 (abnormal closure).
func TestInternalErrorClose(t *testing.T) {
	// Keep one persisted message in memory, so catch-up reads the rest
	// from the store.
	ts := startTestServer(t, hub.Config{RetainMessages: 1, RetainBytes: 1}, ServerConfig{},
		func(st *memStore) hub.Store { return gapStore{st} })
	ctx := context.Background()
	if _, err := ts.hub.Create(ctx, "gap", nil, 0); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := ts.hub.Append(ctx, "gap", []byte("x"), true); err != nil {
			t.Fatal(err)
		}
	}
	c := dialTest(t, ts.url, "gap")
	c.expect(t, wire.FrameHello, 0)
	f := c.next(t)
	if f.Type == wire.FrameMessage || f.Type == wire.FrameBatch {
		f = c.next(t) // the message before the gap
	}
	if f.Type != wire.FrameError || f.Code != wire.CodeInternal || f.Message == "" {
		t.Fatalf("got %+v, want an error frame with code %q", f, wire.CodeInternal)
	}
	err := c.closed(t)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != wire.CloseInternal || ce.Reason == "" {
		t.Fatalf("closed with %v, want %d with a reason", err, wire.CloseInternal)
	}
}

// rawSubscribe creates the channel id on ts's hub and subscribes to it
// over a raw TCP connection, with early sent in the same write as the
// upgrade request. Every read and write on the connection must be done
// within d. It returns the connection and a reader past the 101 response.
func rawSubscribe(t *testing.T, ts *testServer, id string, early []byte, d time.Duration) (net.Conn, *bufio.Reader) {
	t.Helper()
	if _, err := ts.hub.Create(context.Background(), id, nil, 0); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(ts.url, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	req := "GET /ws?id=" + id + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), early...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return conn, br
}

// expectPong reads frames from br, skipping text frames, and fails t
// unless the next other one is the pong of want.
func expectPong(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	for {
		op, b, err := readFrame(br)
		if err != nil {
			t.Fatal(err)
		}
		if op == opText {
			continue
		}
		if op != opPong || string(b) != want {
			t.Fatalf("got opcode %d %q, want the pong %q", op, b, want)
		}
		return
	}
}
