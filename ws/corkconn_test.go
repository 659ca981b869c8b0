package ws

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wire"
)

// recordingConn records what the server writes to one connection, and
// where each write(2) (a Write, or a WriteBuffers, which is one writev on
// a TCP connection) ends.
type recordingConn struct {
	net.Conn
	mu     sync.Mutex
	data   []byte // Guarded by mu: every byte written, in order.
	bounds []int  // Guarded by mu: len(data) after each write.
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.data = append(c.data, p...)
	c.bounds = append(c.bounds, len(c.data))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recordingConn) WriteBuffers(v *net.Buffers) (int64, error) {
	c.mu.Lock()
	for _, b := range *v {
		c.data = append(c.data, b...)
	}
	c.bounds = append(c.bounds, len(c.data))
	c.mu.Unlock()
	return v.WriteTo(c.Conn)
}

// recordingListener wraps every accepted connection in a recordingConn.
type recordingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*recordingConn // Guarded by mu.
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &recordingConn{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, rc)
	l.mu.Unlock()
	return rc, nil
}

// serverFrame is a frame the server wrote: its opcode and where it is in
// the recorded bytes.
type serverFrame struct {
	op         byte
	start, end int
}

// parseServerFrames splits the recorded WebSocket bytes (after the 101
// answer) into frames.
func parseServerFrames(t *testing.T, b []byte) []serverFrame {
	t.Helper()
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 101")) || i < 0 {
		t.Fatalf("not a WebSocket upgrade: %.40q", b)
	}
	var fs []serverFrame
	for pos := i + 4; pos < len(b); {
		if len(b)-pos < 2 {
			t.Fatalf("truncated header at %d", pos)
		}
		n, h := int(b[pos+1]&0x7f), 2
		switch n {
		case 126:
			n, h = int(binary.BigEndian.Uint16(b[pos+2:])), 4
		case 127:
			n, h = int(binary.BigEndian.Uint64(b[pos+2:])), 10
		}
		fs = append(fs, serverFrame{op: b[pos] & 0x0f, start: pos, end: pos + h + n})
		pos += h + n
	}
	return fs
}

// TestOneWritePerFrame: each data frame of a stream, small (one message),
// mid-sized or large (a batch of buffered messages, past 64 KiB), reaches
// the socket in one write: the WebSocket library's frame header and
// payload, which it writes separately, are gathered into one writev.
func TestOneWritePerFrame(t *testing.T) {
	ts := startTestServer(t, hub.Config{}, ServerConfig{})
	ln := &recordingListener{}
	hs := httptest.NewUnstartedServer(ts.srv)
	ln.Listener = hs.Listener
	hs.Listener = ln
	hs.Start()
	t.Cleanup(hs.Close)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := ts.hub.Create(ctx, "w", nil, 0); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 3000)
	for i := range 40 { // a batch of 120 KB when caught up
		if _, err := ts.hub.Append(ctx, "w", fmt.Appendf(nil, "%d %s", i, big), false); err != nil {
			t.Fatal(err)
		}
	}
	conn, _, err := websocket.Dial(ctx, strings.Replace(hs.URL, "http://", "ws://", 1)+"/ws?id=w", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	var last int64
	readUntil := func(seq int64) {
		t.Helper()
		for last < seq {
			_, b, err := conn.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			f, err := wire.DecodeFrame(b)
			if err != nil {
				t.Fatal(err)
			}
			if f.Type == wire.FrameMessage || f.Type == wire.FrameBatch {
				last = f.Seq + int64(len(f.Data)) - 1
			}
		}
	}
	readUntil(40)
	for _, data := range []string{"small", strings.Repeat("m", 200), strings.Repeat("l", 5000)} {
		seq, err := ts.hub.Append(ctx, "w", []byte(data), false)
		if err != nil {
			t.Fatal(err)
		}
		readUntil(seq)
	}

	ln.mu.Lock()
	var rc *recordingConn
	for _, c := range ln.conns {
		c.mu.Lock()
		if bytes.HasPrefix(c.data, []byte("HTTP/1.1 101")) {
			rc = c
		}
		c.mu.Unlock()
	}
	ln.mu.Unlock()
	if rc == nil {
		t.Fatal("no WebSocket connection recorded")
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	isBound := make(map[int]bool)
	for _, b := range rc.bounds {
		isBound[b] = true
	}
	text, large := 0, 0
	for _, f := range parseServerFrames(t, rc.data) {
		if f.op != opText {
			continue
		}
		text++
		if f.end-f.start > 64<<10 {
			large++
		}
		inside := 0
		for b := f.start + 1; b < f.end; b++ {
			if isBound[b] {
				inside++
			}
		}
		if !isBound[f.start] || !isBound[f.end] || inside > 0 {
			t.Errorf("text frame of %d bytes written in %d writes", f.end-f.start, inside+1)
		}
	}
	if text < 5 || large == 0 {
		t.Errorf("%d text frames, %d of them past 64 KiB; want hello, a large batch, live and three messages", text, large)
	}
}
