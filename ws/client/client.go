// Package client is the Go client of the messages WebSocket protocol:
// Subscribe opens a subscription whose Next yields the hello, the messages
// (batches split), live and end, checks that seqs are contiguous, and can
// resume by itself after a drop without a gap or a duplicate.
//
// It depends only on package wire and github.com/coder/websocket, so a
// program that only subscribes links no database driver and builds without
// cgo.
package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/ws/wire"
)

// EventKind says what an Event carries.
type EventKind int

// The kinds of events Next returns, in the order a connection produces them:
// Hello first, Messages, Live once when the catch-up is over (not sent for
// a channel that was already closed), and End when the channel has ended.
const (
	EventHello EventKind = iota + 1
	EventMessage
	EventLive
	EventEnd
)

// String returns the kind's lowercase name.
func (k EventKind) String() string {
	switch k {
	case EventHello:
		return "hello"
	case EventMessage:
		return "message"
	case EventLive:
		return "live"
	case EventEnd:
		return "end"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one step of a subscription. Batch frames are split, so every
// message is its own Event.
type Event struct {
	Kind EventKind
	// Seq is the message's seq for EventMessage, the frame's seq for
	// EventLive and EventEnd (the last seq of the catch-up, and the last seq
	// of the channel), and the requested from for EventHello.
	Seq int64
	// Time is the server append time of a message, Unix microseconds.
	Time int64
	// Data is the message content: the text, or, on a binary channel (see
	// Hello.ContentType), the bytes, decoded from the frame's base64.
	Data string
	// Hello is the hello frame, for EventHello.
	Hello wire.Frame
	// Received is when the frame carrying the event was read from the
	// connection, for measuring latency.
	Received time.Time
}

// Subscription is a subscription to one channel. A goroutine started by
// Subscribe reads the connection, checks every frame and hands it to Next
// through a buffer of 16 frames. While that buffer has room, pings and
// closes are answered even if the caller is busy; once it is full the
// goroutine waits for Next, and so does the connection: a caller that stops
// calling Next for longer than the server's write timeout is dropped by the
// server (and, with Options.Resume, resumes from where it was).
//
// Next must be called from one goroutine at a time; LastSeq and Epoch from
// that same goroutine. Close is safe to call from any goroutine, at any time,
// more than once.
type Subscription struct {
	channel string
	wsURL   *url.URL
	opts    Options

	ctx    context.Context // done when Close is called
	cancel context.CancelFunc
	frames chan clientItem // written by run, closed when it exits
	done   chan struct{}   // closed when run has exited

	mu     sync.Mutex // guards conn and closed
	conn   *websocket.Conn
	closed bool

	// Owned by the caller of Next.
	pending    wire.Frame
	pendingAt  int
	pendingRcv time.Time
	lastSeq    int64
	epoch      string
	err        error // sticky: returned by every later Next
}

// clientItem is a checked frame, or the error that ends the subscription.
type clientItem struct {
	f   wire.Frame
	rcv time.Time
	err error
}

// Subscribe dials baseURL (http://host:port, or https) at /ws for channel
// and returns the subscription. The first event Next returns is the hello.
// Subscribe does not retry a failed dial, even with opts.Resume; a refused
// handshake with a JSON error body is returned as a *ServerError. ctx
// bounds the dial only.
func Subscribe(ctx context.Context, baseURL, channel string, opts Options) (*Subscription, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: parse base url: %w", err)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("client: base url %q: scheme must be http or https", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/ws"
	u.RawQuery, u.Fragment = "", ""
	if opts.From < 0 {
		return nil, fmt.Errorf("client: from %d is negative", opts.From)
	}
	if opts.ReadLimit == 0 {
		opts.ReadLimit = DefaultReadLimit
	}
	if opts.ResumeAttempts <= 0 {
		opts.ResumeAttempts = DefaultResumeAttempts
	}
	if opts.ResumeMinBackoff <= 0 {
		opts.ResumeMinBackoff = DefaultResumeMinBackoff
	}
	if opts.ResumeMaxBackoff <= 0 {
		opts.ResumeMaxBackoff = DefaultResumeMaxBackoff
	}
	s := &Subscription{
		channel: channel,
		wsURL:   u,
		opts:    opts,
		frames:  make(chan clientItem, defaultReadAhead),
		done:    make(chan struct{}),
		lastSeq: opts.From,
		epoch:   opts.Epoch,
	}
	conn, err := s.dial(ctx, opts.From, opts.Epoch)
	if err != nil {
		return nil, err
	}
	s.conn = conn
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run(conn)
	return s, nil
}

// Channel returns the subscribed channel id. It is safe for concurrent use.
func (s *Subscription) Channel() string { return s.channel }

// LastSeq returns the seq of the last message Next returned (opts.From
// before any). Call it from the goroutine that calls Next.
func (s *Subscription) LastSeq() int64 { return s.lastSeq }

// Epoch returns the epoch of the last hello Next returned (opts.Epoch before
// any). Call it from the goroutine that calls Next. LastSeq and Epoch are
// what a later Subscribe needs to resume.
func (s *Subscription) Epoch() string { return s.epoch }

// Next returns the next event. After EventEnd it returns io.EOF; after a
// failure, the error (a *ServerError, a *ProtocolError, or a connection
// error) every time; after Close, ErrSubscriptionClosed. If ctx is done
// first it returns ctx.Err() and the subscription stays usable.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	if s.err != nil {
		return Event{}, s.err
	}
	if s.pendingAt < len(s.pending.Data) {
		return s.splitPending(), nil
	}
	var it clientItem
	var ok bool
	select {
	case it, ok = <-s.frames:
	default:
		select {
		case it, ok = <-s.frames:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
	if !ok {
		s.err = ErrSubscriptionClosed
		return Event{}, s.err
	}
	if it.err != nil {
		s.err = it.err
		return Event{}, s.err
	}
	f := it.f
	switch f.Type {
	case wire.FrameHello:
		s.epoch = f.Epoch
		return Event{Kind: EventHello, Seq: f.From, Hello: f, Received: it.rcv}, nil
	case wire.FrameMessage, wire.FrameBatch:
		s.pending, s.pendingAt, s.pendingRcv = f, 0, it.rcv
		return s.splitPending(), nil
	case wire.FrameLive:
		return Event{Kind: EventLive, Seq: f.Seq, Received: it.rcv}, nil
	default: // wire.FrameEnd; run sends nothing else
		s.err = io.EOF
		return Event{Kind: EventEnd, Seq: f.Seq, Received: it.rcv}, nil
	}
}

// splitPending returns the next message of the pending frame.
func (s *Subscription) splitPending() Event {
	i := s.pendingAt
	s.pendingAt++
	seq := s.pending.Seq + int64(i)
	s.lastSeq = seq
	e := Event{Kind: EventMessage, Seq: seq, Time: s.pending.Time[i], Data: s.pending.Data[i], Received: s.pendingRcv}
	if s.pendingAt == len(s.pending.Data) {
		s.pending = wire.Frame{}
		s.pendingAt = 0
	}
	return e
}

// Close closes the connection (with a close handshake, bounded to a few
// seconds) and waits for the reading goroutine to exit. Later calls to Next
// return ErrSubscriptionClosed, or the error or io.EOF that ended the
// subscription before. It is safe for concurrent use and always returns nil:
// a failed close handshake only means the connection was already gone.
func (s *Subscription) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closed = true
	conn := s.conn
	s.mu.Unlock()
	s.cancel()
	if conn != nil {
		// Errors here only mean the connection was already gone.
		_ = conn.Close(websocket.StatusNormalClosure, "")
	}
	<-s.done
	return nil
}

// run reads connections until the subscription ends, redialing when
// opts.Resume allows it. It owns the seq and epoch tracking.
func (s *Subscription) run(conn *websocket.Conn) {
	defer close(s.done)
	defer close(s.frames)
	r := reader{s: s, last: s.opts.From, epoch: s.opts.Epoch}
	failures := 0
	for {
		progress, err := r.read(conn)
		s.setConn(nil)
		if err == nil || s.ctx.Err() != nil {
			// Ended normally (the end frame was delivered), or closed.
			return
		}
		if !s.opts.Resume || !(resumable(err) || s.renewable(err)) {
			s.send(clientItem{err: err})
			return
		}
		if progress {
			failures = 0
		}
		for {
			failures++
			if failures > s.opts.ResumeAttempts {
				s.send(clientItem{err: fmt.Errorf("client: resume gave up after %d attempts: %w", s.opts.ResumeAttempts, err)})
				return
			}
			if !s.sleep(s.backoff(failures)) {
				return
			}
			conn, err = s.dial(s.ctx, r.last, r.epoch)
			if s.ctx.Err() != nil {
				if conn != nil {
					conn.CloseNow()
				}
				return
			}
			if err == nil {
				break
			}
			if !resumable(err) {
				s.send(clientItem{err: err})
				return
			}
		}
		if !s.setConn(conn) {
			conn.CloseNow()
			return
		}
	}
}

// renewable reports whether err is the end of a subscription whose token
// expired, and a redial can ask TokenSource for a fresh one.
func (s *Subscription) renewable(err error) bool {
	var se *ServerError
	return s.opts.TokenSource != nil && errors.As(err, &se) && se.Code == wire.CodeUnauthorized
}

// setConn records the current connection for Close; it reports false if
// the subscription is closed already.
func (s *Subscription) setConn(c *websocket.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed && c != nil {
		return false
	}
	s.conn = c
	return true
}

// send hands an item to Next; it reports false if the subscription was
// closed first.
func (s *Subscription) send(it clientItem) bool {
	select {
	case s.frames <- it:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// sleep waits d; it reports false if the subscription was closed first.
func (s *Subscription) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// backoff returns the wait before redial attempt n (from 1): a uniformly
// random duration up to min(max, min·2^(n-1)).
func (s *Subscription) backoff(n int) time.Duration {
	d := s.opts.ResumeMinBackoff
	for i := 1; i < n && d < s.opts.ResumeMaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.opts.ResumeMaxBackoff)
	return rand.N(d) + 1
}

// dial opens one connection asking for the messages after from.
func (s *Subscription) dial(ctx context.Context, from int64, epoch string) (*websocket.Conn, error) {
	u := *s.wsURL
	q := url.Values{"id": {s.channel}, "from": {strconv.FormatInt(from, 10)}}
	if epoch != "" {
		q.Set("epoch", epoch)
	}
	u.RawQuery = q.Encode()
	hdr := s.opts.HTTPHeader
	token := s.opts.Token
	if s.opts.TokenSource != nil {
		var err error
		if token, err = s.opts.TokenSource(ctx); err != nil {
			return nil, fmt.Errorf("client: token source: %w", err)
		}
	}
	if token != "" {
		hdr = hdr.Clone()
		if hdr == nil {
			hdr = http.Header{}
		}
		hdr.Set("Authorization", "Bearer "+token)
	}
	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{
		HTTPClient: s.opts.HTTPClient,
		HTTPHeader: hdr,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, httpError(resp, err)
		}
		return nil, &dropError{fmt.Errorf("client: dial %s: %w", s.channel, err)}
	}
	conn.SetReadLimit(s.opts.ReadLimit)
	return conn, nil
}

// reader checks the frames of the successive connections of one
// subscription. Owned by run.
type reader struct {
	s     *Subscription
	last  int64  // last seq received and passed on
	epoch string // epoch of the last hello
}

// read reads one connection until it ends. It returns nil after an end
// frame, a *dropError when the connection went away, or the error that ends
// the subscription; progress tells whether the connection delivered a
// message or reached live or end.
func (r *reader) read(conn *websocket.Conn) (progress bool, err error) {
	defer conn.CloseNow()
	s := r.s
	perr := func(expected, got int64, format string, args ...any) error {
		return &ProtocolError{Channel: s.channel, Expected: expected, Got: got, Reason: fmt.Sprintf(format, args...)}
	}
	hello, live := false, false
	var buf bytes.Buffer // reused: decoded frames copy what they keep
	for {
		typ, b, err := readFrame(conn, &buf)
		rcv := time.Now()
		if err != nil {
			if s.ctx.Err() != nil {
				return progress, nil
			}
			return progress, r.readError(err)
		}
		if typ != websocket.MessageText {
			return progress, perr(0, 0, "binary message")
		}
		f, err := wire.DecodeFrame(b)
		if err != nil {
			return progress, perr(0, 0, "%v", err)
		}
		if !hello && f.Type != wire.FrameHello && f.Type != wire.FrameError {
			return progress, perr(0, 0, "%s frame before hello", f.Type)
		}
		switch f.Type {
		case wire.FrameHello:
			if hello {
				return progress, perr(0, 0, "second hello")
			}
			hello = true
			if f.Channel != s.channel {
				return progress, perr(0, 0, "hello for channel %q", f.Channel)
			}
			if f.From != r.last {
				return progress, perr(r.last, f.From, "hello with another from")
			}
			r.epoch = f.Epoch
		case wire.FrameMessage, wire.FrameBatch:
			if f.Seq != r.last+1 {
				reason := "gap"
				if f.Seq <= r.last {
					reason = "duplicate"
				}
				return progress, perr(r.last+1, f.Seq, "%s", reason)
			}
			r.last += int64(len(f.Data))
			progress = true
		case wire.FrameLive:
			if live {
				return progress, perr(0, 0, "second live")
			}
			live = true
			if f.Seq != r.last {
				return progress, perr(r.last, f.Seq, "live frame after another seq")
			}
			progress = true
		case wire.FrameEnd:
			if f.Seq != r.last {
				return progress, perr(r.last, f.Seq, "end frame after another seq")
			}
			if !s.send(clientItem{f: f, rcv: rcv}) {
				return progress, nil
			}
			// The server closes with 1000 next; answer it politely.
			closeCtx, cancel := context.WithTimeout(s.ctx, clientCloseHandshakeWait)
			_, _, _ = conn.Read(closeCtx)
			cancel()
			return true, nil
		case wire.FrameError:
			return progress, &ServerError{Code: f.Code, Message: f.Message, LastSeq: f.LastSeq}
		}
		if !s.send(clientItem{f: f, rcv: rcv}) {
			return progress, nil
		}
	}
}

// readError classifies an error from reading a connection.
// readFrame reads the next message of conn into buf, which it reuses
// unless it grew past a megabyte, and returns its type and bytes, valid
// until the next call.
func readFrame(conn *websocket.Conn, buf *bytes.Buffer) (websocket.MessageType, []byte, error) {
	if buf.Cap() > 1<<20 {
		*buf = bytes.Buffer{}
	}
	buf.Reset()
	typ, rd, err := conn.Reader(context.Background())
	if err != nil {
		return 0, nil, err
	}
	if _, err := buf.ReadFrom(rd); err != nil {
		return 0, nil, err
	}
	return typ, buf.Bytes(), nil
}

func (r *reader) readError(err error) error {
	status := websocket.CloseStatus(err)
	if code, ok := wire.ErrorCode(int(status)); ok {
		return &ServerError{Code: code, Message: "connection closed with status " + strconv.Itoa(int(status))}
	}
	switch status {
	case websocket.StatusMessageTooBig:
		return fmt.Errorf("client: channel %s: %w", r.s.channel, err)
	case websocket.StatusPolicyViolation, websocket.StatusUnsupportedData, websocket.StatusInvalidFramePayloadData,
		websocket.StatusProtocolError:
		return fmt.Errorf("client: channel %s: connection closed: %w", r.s.channel, err)
	}
	if errors.Is(err, websocket.ErrMessageTooBig) {
		return fmt.Errorf("client: channel %s: frame over the read limit of %d bytes: %w", r.s.channel, r.s.opts.ReadLimit, err)
	}
	// Going away, service restart, abnormal closure, a normal closure
	// before end, or a network error: the connection dropped.
	return &dropError{fmt.Errorf("client: channel %s: connection dropped after seq %d: %w", r.s.channel, r.last, err)}
}
