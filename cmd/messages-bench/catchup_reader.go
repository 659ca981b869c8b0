package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/ws/client"
	"github.com/messages-server/messages/ws/wire"
)

// verifiedFramesBytes bounds the frames a catchup run remembers as checked.
const verifiedFramesBytes = 256 << 20

// frameSpan is what a checked frame of messages holds: count messages from
// seq first on, of bytes bytes of data in all.
type frameSpan struct {
	first, count, bytes int64
}

// verifiedFrames remembers frames that a reader decoded and checked message
// by message, by their exact bytes. Safe for concurrent use.
type verifiedFrames struct {
	mu   sync.RWMutex
	m    map[string]frameSpan
	room int // bytes that may still be remembered
}

func newVerifiedFrames(bytes int) *verifiedFrames {
	return &verifiedFrames{m: make(map[string]frameSpan), room: bytes}
}

// lookup returns the span of a checked frame with exactly these bytes.
func (v *verifiedFrames) lookup(frame []byte) (frameSpan, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	s, ok := v.m[string(frame)]
	return s, ok
}

// add remembers frame, checked, as holding s, while there is room.
func (v *verifiedFrames) add(frame []byte, s frameSpan) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.m[string(frame)]; ok || len(frame) > v.room {
		return
	}
	v.room -= len(frame)
	v.m[string(frame)] = s
}

// framePool holds the readers' frame buffers: a thousand readers joining at
// once would otherwise each allocate (and zero) their own.
var framePool = sync.Pool{New: func() any {
	b := make([]byte, 0, 256<<10) // a history page of large messages
	return &b
}}

// catchupReadLimit is the largest frame a catchup reader accepts.
const catchupReadLimit = 64 << 20

// dialCatchup opens a WebSocket subscription to channel id from the start.
func dialCatchup(ctx context.Context, baseURL, id string, hc *http.Client) (*websocket.Conn, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, err
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path = strings.TrimSuffix(u.Path, "/") + "/ws"
	u.RawQuery = url.Values{"id": {id}, "from": {"0"}}.Encode()
	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("handshake refused with status %d: %w", resp.StatusCode, err)
		}
		return nil, err
	}
	conn.SetReadLimit(catchupReadLimit)
	return conn, nil
}

// readWholeFrame reads the next WebSocket message of conn into *buf, grown
// as needed, and returns its type and bytes, valid until the next call.
func readWholeFrame(ctx context.Context, conn *websocket.Conn, buf *[]byte) (websocket.MessageType, []byte, error) {
	typ, r, err := conn.Reader(ctx)
	if err != nil {
		return 0, nil, err
	}
	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			*buf = b
			return typ, b, nil
		}
		if err != nil {
			*buf = b
			return 0, nil, err
		}
	}
}

// readCatchup reads channel id as reader k until it is caught up: the end
// of a closed channel, or live on an open one. It releases sem once its
// dial is over. It returns when it was done and how many message bytes it
// received; a problem with the messages is left in check for readerDone.
//
// It reads the WebSocket itself rather than through the client package, so
// that it can check a frame seen before by its bytes: a frame whose bytes
// equal those of a frame that a reader decoded and checked message by
// message, starting at the same seq, carries the same messages. Every byte
// is still verified, and the bench's CPU stays small beside the server's
// when a thousand readers receive the same pre-encoded history pages.
func readCatchup(ctx context.Context, b *bench, id string, k int, sem <-chan struct{}, check *seqChecker, seen *verifiedFrames) (time.Time, int64, error) {
	started := time.Now()
	b.st.dials.Add(1)
	conn, err := dialCatchup(ctx, b.cfg.readerURL(k), id, b.src.nextWS())
	<-sem
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("connect: %w", err)
	}
	b.st.open.Add(1)
	defer func() {
		b.st.open.Add(-1)
		conn.CloseNow()
	}()
	buf := framePool.Get().(*[]byte)
	defer framePool.Put(buf)
	perr := func(format string, args ...any) error {
		return &client.ProtocolError{Channel: id, Reason: fmt.Sprintf(format, args...)}
	}
	hello := false
	var n int64
	for {
		typ, frame, err := readWholeFrame(ctx, conn, buf)
		rcv := time.Now()
		if err != nil {
			return time.Time{}, n, err
		}
		if typ != websocket.MessageText {
			return time.Time{}, n, perr("binary WebSocket message")
		}
		if s, ok := seen.lookup(frame); ok && hello && s.first == check.next {
			check.next += s.count
			check.off += int(s.bytes)
			n += s.bytes
			b.st.deliveries(rcv, s.count, s.bytes)
			continue
		}
		f, err := wire.DecodeFrame(frame)
		if err != nil {
			return time.Time{}, n, perr("%v", err)
		}
		if !hello && f.Type != wire.FrameHello && f.Type != wire.FrameError {
			return time.Time{}, n, perr("%s frame before hello", f.Type)
		}
		switch f.Type {
		case wire.FrameHello:
			if hello || f.Channel != id || f.From != 0 {
				return time.Time{}, n, perr("unexpected hello for channel %q from %d", f.Channel, f.From)
			}
			hello = true
		case wire.FrameMessage, wire.FrameBatch:
			s := frameSpan{first: f.Seq, count: int64(len(f.Data))}
			for i, d := range f.Data {
				if check.add(f.Seq+int64(i), d) != nil {
					return time.Time{}, n, nil // readerDone reports check's problem
				}
				s.bytes += int64(len(d))
			}
			seen.add(frame, s)
			n += s.bytes
			b.st.deliveries(rcv, s.count, s.bytes)
		case wire.FrameLive, wire.FrameEnd:
			if f.Seq != check.next-1 {
				return time.Time{}, n, perr("%s frame at seq %d after seq %d", f.Type, f.Seq, check.next-1)
			}
			b.st.catchup.record(k, rcv.Sub(started))
			if f.Type == wire.FrameLive {
				b.st.liveCount.Add(1)
			}
			// Polite and bounded: after end the server closes with 1000
			// itself; a live subscription is closed by the reader.
			_ = conn.Close(websocket.StatusNormalClosure, "")
			return rcv, n, nil
		case wire.FrameError:
			return time.Time{}, n, &client.ServerError{Code: f.Code, Message: f.Message, LastSeq: f.LastSeq}
		}
	}
}
