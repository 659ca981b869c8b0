//go:build unix

package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/ws/wire"
)

// TestFaultStalledReaders subscribes fast readers and, on raw sockets with
// a 4 KiB receive buffer, readers that stop reading right after the
// handshake, then appends several MiB. The fast readers get every message,
// in order, to the end, while the stalled ones have not read a byte: the
// stalled ones are detached (the slow-consumer resync) and, once their
// writes time out, dropped. When they read again, what they got is an
// exact prefix of the channel, and resuming from its last seq gives them
// the rest.
func TestFaultStalledReaders(t *testing.T) {
	t.Parallel()
	const (
		fast     = 4
		stalled  = 20
		messages = 256
		size     = 16 << 10 // 4 MiB in all, far past a stalled socket's buffers
	)
	s := start(t, "-database-url", persisttest.DatabaseURL(t), "-queue-len", "16")
	ctx := contextFor(t, 2*time.Minute)
	do(t, "POST", s.base+"/channels", `{"id":"fan"}`, http.StatusCreated)

	readers := make([]*rawWS, stalled)
	for i := range readers {
		readers[i] = dialStalled(t, s.base, "/ws?id=fan")
	}
	results := make(chan subResult, fast)
	for range fast {
		go func() { results <- subscribe(ctx, s.base, "fan") }()
	}
	eventually(t, 30*time.Second, "every reader subscribed", func() bool {
		return metrics(t, s.base)["messages_subscribers"] == fast+stalled
	})

	c := faultClient(t, 30*time.Second)
	want := make([]string, messages)
	began := time.Now()
	for i := range want {
		want[i] = fmt.Sprintf("%04d %s", i+1, strings.Repeat("x", size-5))
		if a, err := ask(c, "POST", s.base+"/channels/fan/messages", "text/plain", want[i]); err != nil || a.status != http.StatusOK {
			t.Fatalf("append %d: %+v %v", i+1, a, err)
		}
	}
	do(t, "POST", s.base+"/channels/fan/close", "", http.StatusOK)
	var lat []time.Duration
	for range fast {
		r := <-results
		if r.err != nil || !slices.Equal(r.data, want) {
			t.Fatalf("a fast reader got %d messages (%v), want all %d", len(r.data), r.err, messages)
		}
		lat = append(lat, r.lat...)
	}
	took := time.Since(began)
	// Every stalled reader is still stalled here: none has read a byte
	// past the handshake, and the fast ones are done.
	m := metrics(t, s.base)
	resyncs := m["messages_slow_consumer_resyncs_total"]
	if resyncs == 0 {
		t.Fatal("no subscriber was detached: the stalled readers never filled their queues, the case misses its point")
	}
	eventually(t, time.Minute, "every connection ended", func() bool {
		return metrics(t, s.base)["messages_websocket_connections_total"] == fast+stalled
	})
	m = metrics(t, s.base)
	outcomes := make(map[string]float64)
	for k, v := range m {
		if o, ok := strings.CutPrefix(k, `messages_websocket_connections_total{outcome="`); ok && v > 0 {
			outcomes[strings.TrimSuffix(o, `"}`)] = v
		}
	}

	complete := 0
	for i, r := range readers {
		got, ended, err := r.readAll()
		if !slices.Equal(got, want[:len(got)]) {
			t.Fatalf("stalled reader %d: got %d messages that are not the channel's first ones", i, len(got))
		}
		if ended {
			complete++
			continue
		}
		rest := resume(ctx, s.base, "fan", subResult{data: got})
		if rest.err != nil || !slices.Equal(rest.data, want) {
			t.Fatalf("stalled reader %d, resumed after %d messages (%v): got %d, want %d (%v)", i, len(got), err, len(rest.data), messages, rest.err)
		}
	}
	slices.Sort(lat)
	t.Logf("RELIABILITY stalled readers: %d fast and %d stalled readers, %d messages of %d KiB in %v; fast readers got all, delivery latency p50 %v p99 %v max %v; %v resyncs, connections by outcome %v, %d stalled readers complete without resuming, %d resumed to the end",
		fast, stalled, messages, size>>10, took.Round(time.Millisecond), lat[len(lat)/2].Round(time.Microsecond),
		lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond), resyncs, outcomes, complete, stalled-complete)
}

// rawWS is a WebSocket client on a raw socket with a small receive buffer,
// reading nothing until told to.
type rawWS struct {
	conn net.Conn
	br   *bufio.Reader
}

// dialStalled opens a WebSocket to path with a 4 KiB receive buffer and
// reads the handshake's answer only.
func dialStalled(t *testing.T, base, path string) *rawWS {
	t.Helper()
	host := strings.TrimPrefix(base, "http://")
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, host, base64.StdEncoding.EncodeToString(key))
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("WebSocket handshake: %v %v", resp, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return &rawWS{conn: conn, br: br}
}

// readAll reads every message the server sent until it closed the
// connection, checking the frames are contiguous from seq 1; ended means
// the end frame came.
func (r *rawWS) readAll() (data []string, ended bool, err error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		msg, err := r.readMessage()
		if err != nil {
			return data, ended, err
		}
		f, err := wire.DecodeFrame(msg)
		if err != nil {
			return data, ended, err
		}
		switch f.Type {
		case wire.FrameMessage, wire.FrameBatch:
			if f.Seq != int64(len(data))+1 {
				return data, ended, fmt.Errorf("frame at seq %d after %d", f.Seq, len(data))
			}
			data = append(data, f.Data...)
		case wire.FrameEnd:
			ended = true
		}
	}
}

// readMessage reads one data message, skipping control frames; a close
// frame or the end of the connection is an error.
func (r *rawWS) readMessage() ([]byte, error) {
	var msg []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(r.br, h[:]); err != nil {
			return nil, err
		}
		fin, op, n := h[0]&0x80 != 0, h[0]&0x0f, uint64(h[1]&0x7f)
		if h[1]&0x80 != 0 {
			return nil, errors.New("the server masked a frame")
		}
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(r.br, b[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(r.br, b[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if n > 64<<20 {
			return nil, fmt.Errorf("a frame of %d bytes", n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r.br, payload); err != nil {
			return nil, err
		}
		switch op {
		case 0x8:
			return nil, fmt.Errorf("close frame %x", payload)
		case 0x9, 0xA: // ping, pong
			continue
		}
		msg = append(msg, payload...)
		if fin {
			return msg, nil
		}
	}
}
