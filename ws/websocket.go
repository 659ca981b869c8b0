package ws

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wire"
)

// refuseNotUpgrade answers a plain request to /ws with 426 and a message
// a person can act on (coder/websocket would answer in text/plain).
func (s *Server) refuseNotUpgrade(w http.ResponseWriter) {
	s.m.conns.WithLabelValues(outcomeRejected).Inc()
	w.Header().Set("Connection", "Upgrade")
	w.Header().Set("Upgrade", "websocket")
	writeError(w, http.StatusUpgradeRequired, "GET /ws is a WebSocket endpoint: the request must be an HTTP/1.1 upgrade "+
		"(Connection: Upgrade, Upgrade: websocket); read a channel over plain HTTP with GET /?id=ID")
}

// acceptOptions are the handshake's options: the allowed origins ("*"
// skips the check) and compression.
func (s *Server) acceptOptions() *websocket.AcceptOptions {
	opts := &websocket.AcceptOptions{OriginPatterns: s.cfg.AllowedOrigins}
	if slices.Contains(s.cfg.AllowedOrigins, "*") {
		opts.InsecureSkipVerify = true
	}
	if s.cfg.Compression {
		opts.CompressionMode = websocket.CompressionContextTakeover
	}
	return opts
}

// handleWS serves GET /ws?id=ID&from=SEQ&epoch=E.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	if !isUpgrade(r) {
		s.refuseNotUpgrade(w)
		return
	}
	q := r.URL.Query()
	id, fromParam, epoch := q.Get("id"), q.Get("from"), q.Get("epoch")
	// A bad id or from is refused after the upgrade, with an error frame,
	// whatever the token: only a well-formed request is authorized. The
	// subscription ends when its token expires.
	var until time.Time
	if _, err := parseFrom(fromParam); err == nil && hub.ValidID(id) {
		var ok bool
		if until, ok = s.authorizeUntil(w, r, auth.Subscribe, id, true); !ok {
			s.m.conns.WithLabelValues(outcomeRejected).Inc()
			return
		}
	}
	release, ok := s.q.acquireConn(w, r)
	if !ok {
		s.m.conns.WithLabelValues(outcomeRejected).Inc()
		return
	}
	sb := &smallBuffers{ResponseWriter: w}
	conn, err := websocket.Accept(sb, r, s.acceptOptions())
	if err != nil {
		// Accept has answered the request (400 or 403).
		release()
		s.m.conns.WithLabelValues(outcomeRejected).Inc()
		return
	}
	conn.SetReadLimit(4096) // clients send nothing but control frames

	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		release()
		conn.Close(websocket.StatusGoingAway, "server is shutting down")
		s.m.conns.WithLabelValues(outcomeShutdown).Inc()
		return
	}
	// The connection's context ends when the client goes away, the
	// server stops or the token expires; each then wakes the stream,
	// which may be parked (see Hub.streamParked).
	wake := new(hub.Waker)
	ctx, cancelCause := context.WithCancelCause(context.Background())
	cancel := func() {
		cancelCause(nil)
		wake.Wake()
	}
	var expiry *time.Timer
	if !until.IsZero() {
		expiry = time.AfterFunc(time.Until(until), func() {
			cancelCause(errTokenExpired)
			wake.Wake()
		})
	}
	s.conns[conn] = cancel
	s.wg.Add(2) // the stream and the connection's reader
	s.mu.Unlock()
	// The stream runs on its own goroutine so that this handler returns
	// and net/http frees the request, the response and the deep stack of
	// its connection goroutine: an idle subscriber costs only what the
	// WebSocket needs.
	go s.serveConn(ctx, cancel, wake, conn, sb.conn, sb.idle, id, fromParam, epoch, func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		release()
		if expiry != nil {
			expiry.Stop()
		}
		cancel()
		s.wg.Done()
	})
}

// isUpgrade reports whether r asks for a WebSocket upgrade; otherwise
// websocket.Accept would answer 426.
func isUpgrade(r *http.Request) bool {
	return r.ProtoAtLeast(1, 1) && headerHasToken(r.Header, "Connection", "upgrade") &&
		headerHasToken(r.Header, "Upgrade", "websocket")
}

// headerHasToken reports whether the comma-separated values of header key
// include token, ignoring case.
func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// serveConn streams one channel to an accepted WebSocket until the stream
// ends, the client goes away or the server stops, then closes the
// connection and calls cleanup. While the subscriber is idle no goroutine
// runs its stream (see Hub.streamParked): serveConn may return long before
// the stream ends, which the goroutine that ends it finishes.
//
// cancel cancels ctx and wakes the stream through wake; serveConn cancels
// it when the client goes away, and cleanup must cancel it too. The
// caller has counted the connection's reader, which serveConn starts, in
// s.wg.
func (s *Server) serveConn(ctx context.Context, cancel context.CancelFunc, wake *hub.Waker, conn *websocket.Conn, nc net.Conn,
	ir *idleReader, id, fromParam, epoch string, cleanup func()) {
	// The connection's reader answers pings and the close handshake, and
	// ends the stream when the client goes away; what conn.CloseRead does,
	// without the context and the AfterFunc on it that ten thousand idle
	// subscribers would each hold. Its context is not ctx: cancelling ctx
	// (shutdown) must stop the stream but leave the connection up for the
	// 1001 close handshake. s.wg waits for it, as Close waited for
	// CloseRead's goroutine.
	//
	// With an idleReader under the library, the reader waits for the
	// client's next frame outside the library, where its stack is shallow
	// (see idleReader), and calls Reader again once bytes arrive.
	var read func()
	read = func() {
		for {
			if ir != nil {
				if ir.wait() != nil {
					break // the connection is closed
				}
				ir.allowIdle()
			}
			_, _, err := conn.Reader(context.Background())
			if ir != nil && errors.Is(err, errIdle) {
				// The frames that came are handled: wait again, on a
				// new goroutine (which takes this one's place in
				// s.wg). This one's stack grew in the library's frame
				// parser, and the runtime shrinks a stack only while
				// less than a quarter of it is in use, which the wait
				// exceeds: a new one waits on the 2 KiB minimum.
				go read()
				return
			}
			if err == nil {
				ir.closing()
				conn.Close(websocket.StatusPolicyViolation, "unexpected data message")
			}
			break
		}
		conn.CloseNow()
		cancel()
		s.wg.Done()
	}
	go read()
	end := func() {
		ir.closing()
		cleanup()
	}
	if !hub.ValidID(id) {
		s.reject(conn, wire.CodeBadRequest, hub.IDError(id))
		end()
		return
	}
	from, err := parseFrom(fromParam)
	if err != nil {
		s.reject(conn, wire.CodeBadRequest, err.Error())
		end()
		return
	}
	ws := &wsSink{conn: conn, nc: nc, timeout: s.cfg.WriteTimeout, m: s.m, ping: s.cfg.PingInterval}
	if cc, ok := nc.(*corkConn); ok && !s.cfg.Compression {
		ws.cork = cc // a compressed frame's size is not known in advance
	}
	s.hub.StreamParked(ctx, id, from, epoch, ws, wake, func(err error) {
		ir.closing() // the close handshake reads the client's answer
		// The close handshake has its own timeouts.
		_ = nc.SetWriteDeadline(time.Time{})
		s.finish(conn, ctx, id, err)
		end()
	})
}

// finish closes conn according to how its stream ended.
func (s *Server) finish(conn *websocket.Conn, ctx context.Context, id string, err error) {
	var fe *hub.FromError
	var be *hub.BadRequestError
	var se *hub.StoreError
	var re *hub.ResetError
	s.mu.Lock()
	stopping := s.shutdown
	s.mu.Unlock()
	switch {
	case err == nil:
		conn.Close(websocket.StatusNormalClosure, "end of channel")
		s.m.conns.WithLabelValues(outcomeEnded).Inc()
	case errors.Is(err, hub.ErrShuttingDown), stopping && ctx.Err() != nil:
		// Shutdown cancels the streams it has not ended itself (those
		// still catching up): both get "going away", so clients resume.
		conn.Close(websocket.StatusGoingAway, "server is shutting down, resume later")
		s.m.conns.WithLabelValues(outcomeShutdown).Inc()
	case tokenExpired(ctx):
		s.reject(conn, wire.CodeUnauthorized, "the token of this subscription expired: "+
			"subscribe again with a fresh token, with from and epoch to resume where this stopped")
	case errors.Is(err, hub.ErrMoved):
		// Another node runs the channel now: resume, with the epoch.
		conn.Close(websocket.StatusGoingAway, "channel moved to another node, resume")
		s.m.conns.WithLabelValues(outcomeMoved).Inc()
	case errors.Is(err, hub.ErrNotFound):
		s.reject(conn, wire.CodeNotFound, "channel "+strconv.Quote(id)+" not found")
	case errors.Is(err, hub.ErrChannelDeleted):
		s.reject(conn, wire.CodeDeleted, "channel "+strconv.Quote(id)+" was deleted: its history is gone")
	case errors.Is(err, hub.ErrChannelFailed):
		// The actor has logged why.
		s.reject(conn, wire.CodeInternal, "channel "+strconv.Quote(id)+" failed on the server: "+
			"messages after the last durable one may be lost; resume later with from and epoch")
		s.m.conns.WithLabelValues(outcomeError).Inc()
	case errors.As(err, &fe), errors.As(err, &be):
		s.reject(conn, wire.CodeBadRequest, err.Error())
	case errors.As(err, &re):
		s.rejectFrame(conn, wire.Frame{Code: wire.CodeReset, Message: re.Error(),
			Epoch: strconv.FormatInt(re.Epoch, 10), LastSeq: re.Survived})
	case ctx.Err() != nil:
		// The client went away, or the server dropped it.
		conn.CloseNow()
		s.m.conns.WithLabelValues(outcomeGone).Inc()
	case errors.As(err, &se):
		s.storeWarn.Log(ctx, slog.String("channel", id), slog.Any("err", err))
		s.reject(conn, wire.CodeUnavailable, "storage is unavailable, retry later")
		s.m.conns.WithLabelValues(outcomeError).Inc()
	case peerGone(err):
		// The client closed its end (a browser tab closing does this
		// while a write is on its way): an ordinary end.
		s.log.Debug("websocket closed by the client during a write", slog.String("channel", id), slog.Any("err", err))
		conn.CloseNow()
		s.m.conns.WithLabelValues(outcomeGone).Inc()
	case isWriteFailure(err):
		// The client is not taking what is written: nothing more can
		// reach it.
		s.writeWarn.Log(ctx, slog.String("channel", id), slog.Any("err", err))
		conn.CloseNow()
		s.m.conns.WithLabelValues(outcomeError).Inc()
	default:
		s.log.Error("websocket stream failed", slog.String("channel", id), slog.Any("err", err))
		s.reject(conn, wire.CodeInternal, "internal server error; the stream stopped at the last message received: resume later")
		s.m.conns.WithLabelValues(outcomeError).Inc()
	}
}

// isWriteFailure reports errors of a write to the client's socket, and
// keep-alive pings left unanswered.
func isWriteFailure(err error) bool {
	var oe *net.OpError
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, net.ErrClosed) || errors.As(err, &oe)
}

// peerGone reports errors of a write to a socket the client has closed
// or reset.
func peerGone(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// reject sends an error frame and closes with the code's close status.
func (s *Server) reject(conn *websocket.Conn, code, msg string) {
	s.rejectFrame(conn, wire.Frame{Code: code, Message: msg})
}

// rejectFrame sends the error frame f and closes with the close status of
// its code.
func (s *Server) rejectFrame(conn *websocket.Conn, f wire.Frame) {
	status, _ := wire.CloseCode(f.Code)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	defer cancel()
	if conn.Write(ctx, websocket.MessageText, wire.AppendError(nil, f)) == nil {
		conn.Close(websocket.StatusCode(status), wire.CloseReason(f.Code))
	} else {
		conn.CloseNow()
	}
	switch f.Code {
	case wire.CodeUnavailable, wire.CodeInternal:
	case wire.CodeDeleted:
		s.m.conns.WithLabelValues(outcomeDeleted).Inc()
	case wire.CodeUnauthorized:
		s.m.conns.WithLabelValues(outcomeExpired).Inc()
	default:
		s.m.conns.WithLabelValues(outcomeRejected).Inc()
	}
}

// wsSink writes a stream as WebSocket frames. A run of queued messages goes
// out as one batch frame: one write for many deliveries.
type wsSink struct {
	conn    *websocket.Conn
	nc      net.Conn  // the connection under conn, for write deadlines
	cork    *corkConn // nc, when each frame goes out in one write; or nil
	timeout time.Duration
	ping    time.Duration
	m       *Metrics

	lastWrite time.Time
}

// frameBufs holds the buffers frames are encoded into, taken only while a
// frame is written: an idle subscriber holds none.
var frameBufs = sync.Pool{New: func() any { return new([]byte) }}

// writeEncoded encodes a frame with enc into a pooled buffer and writes it.
func (w *wsSink) writeEncoded(enc func([]byte) []byte) error {
	bp := frameBufs.Get().(*[]byte)
	*bp = enc((*bp)[:0])
	err := w.write(*bp)
	if cap(*bp) <= 64<<10 {
		frameBufs.Put(bp) // a larger one would pin memory in the pool
	}
	return err
}

// write writes one frame. Its deadline is set on the connection rather than
// through a per-write context, which costs no allocation, and is cleared
// once the frame is written: the library writes pongs and the close
// handshake on the same connection at any time, and a deadline left in
// place would have passed by then on an idle stream, failing the pong and
// killing the connection.
func (w *wsSink) write(b []byte) error {
	now := time.Now()
	w.lastWrite = now
	if err := w.nc.SetWriteDeadline(now.Add(w.timeout)); err != nil {
		return err
	}
	if w.cork != nil {
		w.cork.gather(frameSize(len(b)))
	}
	err := w.conn.Write(context.Background(), websocket.MessageText, b)
	if w.cork != nil {
		if ferr := w.cork.flush(); err == nil {
			err = ferr
		}
	}
	if cerr := w.nc.SetWriteDeadline(time.Time{}); err == nil {
		err = cerr
	}
	return err
}

func (w *wsSink) Hello(h hub.HelloInfo) error {
	return w.writeEncoded(func(b []byte) []byte {
		return wire.AppendHello(b, wire.Frame{Channel: h.Channel, Epoch: strconv.FormatInt(h.Epoch, 10),
			From: h.From, LastSeq: h.LastSeq, PersistedSeq: h.Persisted, Open: h.Open, ContentType: h.ContentType})
	})
}

func (w *wsSink) Messages(msgs []*wire.Message, live bool) error {
	var err error
	if len(msgs) == 1 && msgs[0].Len() == 1 {
		err = w.write(msgs[0].Encoded()) // the shared, pre-encoded frame
	} else {
		err = w.writeEncoded(func(b []byte) []byte { return wire.AppendMessages(b, msgs) })
	}
	if err != nil {
		return err
	}
	observeDelivery(w.m, msgs, live)
	return nil
}

// page writes a cached history page's frames as they are: the same bytes
// for every reader, encoded once.
func (w *wsSink) Page(p *hub.Page) error {
	for _, f := range p.Frames() {
		if err := w.write(f); err != nil {
			return err
		}
	}
	w.m.delivered.Add(float64(p.Count()))
	return nil
}

func (w *wsSink) Live(seq int64) error {
	return w.writeEncoded(func(b []byte) []byte { return wire.AppendSeq(b, wire.FrameLive, seq) })
}

func (w *wsSink) End(seq int64) error {
	return w.writeEncoded(func(b []byte) []byte { return wire.AppendSeq(b, wire.FrameEnd, seq) })
}

// heartbeat returns the interval of keep-alive pings while idle.
func (w *wsSink) Heartbeat() time.Duration { return w.ping }

// keepalive pings the client if nothing was written for a heartbeat; an
// unanswered ping ends the stream.
func (w *wsSink) Keepalive() error {
	if time.Since(w.lastWrite) < w.ping {
		return nil
	}
	w.lastWrite = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	return w.conn.Ping(ctx)
}
