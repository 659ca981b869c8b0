package ws

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/hub"
)

// TestIdleReaderTrack: idleReader finds the boundaries between frames in
// the bytes it reads however they are split: short, 16-bit and 64-bit
// lengths, masked or not, empty payloads.
func TestIdleReaderTrack(t *testing.T) {
	long := func(n int) []byte { // an unmasked frame with a 16- or 64-bit length
		b := []byte{0x82, 126, byte(n >> 8), byte(n)}
		if n > 0xffff {
			b = []byte{0x82, 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
		}
		return append(b, make([]byte, n)...)
	}
	frames := [][]byte{
		maskedFrame(opPing, nil),
		maskedFrame(opPing, []byte("are you there?")),
		maskedFrame(opPong, make([]byte, 125)),
		long(126),
		long(70000),
		maskedFrame(opClose, []byte{0x03, 0xe8}),
	}
	var stream []byte
	var ends []int // offsets where a frame ends
	for _, f := range frames {
		stream = append(stream, f...)
		ends = append(ends, len(stream))
	}
	for _, step := range []int{1, 2, 3, 7, 64, 1000, len(stream)} {
		var r idleReader
		at := 0
		for at < len(stream) {
			n := min(step, len(stream)-at)
			r.track(stream[at : at+n])
			at += n
			between := r.hn == 0 && r.need == 0
			if want := slices.Contains(ends, at); between != want {
				t.Fatalf("reading %d bytes at a time: after byte %d between frames %v, want %v", step, at, between, want)
			}
		}
	}
}

// TestIdleReaderPings: a subscriber whose connection's reader waits
// outside the library between frames answers every ping, sent one at a
// time, several in one write, or a frame split over several writes; gets
// its live messages; and closes cleanly when the client closes.
func TestIdleReaderPings(t *testing.T) {
	ts := startTestServer(t, hub.Config{}, ServerConfig{PingInterval: time.Hour})
	ctx := context.Background()
	conn, br := rawSubscribe(t, ts, "idle", nil, 20*time.Second)
	for i := range 5 { // one at a time: the reader waits again after each
		p := fmt.Sprint("ping ", i)
		if _, err := conn.Write(maskedFrame(opPing, []byte(p))); err != nil {
			t.Fatal(err)
		}
		expectPong(t, br, p)
	}
	two := append(maskedFrame(opPing, []byte("a")), maskedFrame(opPing, []byte("b"))...)
	if _, err := conn.Write(two); err != nil {
		t.Fatal(err)
	}
	expectPong(t, br, "a")
	expectPong(t, br, "b")
	split := maskedFrame(opPing, []byte("split"))
	for _, part := range [][]byte{split[:1], split[1:4], split[4:]} {
		if _, err := conn.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	expectPong(t, br, "split")
	readerWaitsOutside(t)
	if _, err := ts.hub.Append(ctx, "idle", []byte("live"), false); err != nil {
		t.Fatal(err)
	}
	for live := false; !live; {
		op, b, err := readFrame(br)
		if err != nil {
			t.Fatalf("no live message: %v", err)
		}
		live = op == opText && strings.Contains(string(b), `"data":"live"`)
	}
	if _, err := conn.Write(maskedFrame(opPing, []byte("after"))); err != nil {
		t.Fatal(err)
	}
	expectPong(t, br, "after")
	readerWaitsOutside(t)
	if _, err := conn.Write(maskedFrame(opClose, []byte{0x03, 0xe8})); err != nil {
		t.Fatal(err)
	}
	for {
		op, b, err := readFrame(br)
		if err != nil {
			t.Fatalf("no close frame in answer: %v", err)
		}
		if op == opClose {
			if len(b) < 2 || binary.BigEndian.Uint16(b) != 1000 {
				t.Fatalf("close answered with %q, want 1000", b)
			}
			break
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the close handshake: %v, want EOF", err)
	}
}

// readerWaitsOutside waits until the reader of every open WebSocket waits
// for bytes outside the library (in idleReader.wait), and fails t if one
// stays elsewhere, such as blocked in the library's frame parser on a read
// of the socket.
func readerWaitsOutside(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		stacks := strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
		readers, outside := 0, 0
		var last string
		for _, g := range stacks {
			if !strings.Contains(g, "ws.(*Server).serveConn.func") || strings.Contains(g, "serveConn.func2") {
				continue
			}
			readers++
			if strings.Contains(g, "ws.(*idleReader).wait") {
				outside++
			} else {
				last = g
			}
		}
		if readers > 0 && readers == outside {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connection readers wait outside the library; one is at:\n%s", readers-outside, readers, last)
		}
		time.Sleep(time.Millisecond) // a goroutine's stack has no event to wait on
	}
}

// TestIdleReaderEarlyFrame: a ping the client sends in the same write as
// its handshake, which the server has read with the request, is answered,
// and the connection's reader then waits outside the library, as it does
// after any frame (it read the socket in the library's frame parser
// before).
func TestIdleReaderEarlyFrame(t *testing.T) {
	ts := startTestServer(t, hub.Config{}, ServerConfig{PingInterval: time.Hour})
	conn, br := rawSubscribe(t, ts, "early", maskedFrame(opPing, []byte("early")), 20*time.Second)
	expectPong(t, br, "early")
	readerWaitsOutside(t)
	if _, err := conn.Write(maskedFrame(opPing, []byte("next"))); err != nil {
		t.Fatal(err)
	}
	expectPong(t, br, "next")
	readerWaitsOutside(t)
}
