package ws

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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
	ts := startTestServer(t, HubConfig{}, ServerConfig{PingInterval: time.Hour})
	ctx := context.Background()
	if _, err := ts.hub.Create(ctx, "pipe", nil, 0); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(ts.url, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Bounds every read below: a lost ping shows as no pong by then.
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	req := "GET /ws?id=pipe HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	payload := []byte("are you there?")
	if _, err := conn.Write(append([]byte(req), maskedFrame(opPing, payload)...)); err != nil {
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
