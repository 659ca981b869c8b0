package ws

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// readBody reads r's body, at most limit bytes, within the body timeout.
// The deadline is set on the connection for this request only and cleared
// once the body is in, so a streaming response that follows is not cut. On
// failure readBody has written the error response (408, 413 with tooLarge,
// or 400) and returns false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64, tooLarge string) ([]byte, bool) {
	rc := http.NewResponseController(w)
	// An error means the connection cannot take deadlines (HTTP/2 on an
	// old transport, a test recorder): the body is then read without one.
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout))
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, tooLarge)
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The connection is unusable after a timed-out read: close it.
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestTimeout, fmt.Sprintf("the request body did not arrive within %v", s.cfg.BodyTimeout))
	case err != nil:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading the request body: %v", err))
	default:
		_ = rc.SetReadDeadline(time.Time{})
		if cap(data) > len(data)+len(data)/4 {
			// io.ReadAll grows by doubling: keep no more than the
			// message needs, as the buffer may hold it for long. The
			// copy's capacity is its allocation, size class included.
			data = bytes.Clone(data)
		}
		return data, true
	}
	return nil, false
}

// boundBodies is the outermost handler: it keeps a request whose body is
// not read from holding its connection. net/http, after a handler that left
// the body unread (a refusal: 404, 405, 400, 401, 403, 421, 429...),
// reads what is left of it before answering, to reuse the connection, and
// with no deadline a client that announced more than it sends would hold
// the connection, and a goroutine, for ever. So a request with a body
//   - counts in its client's streaming connections (-max-conns-per-ip)
//     until its body is read to the end: past the bound it gets 429 and
//     the connection is closed;
//   - has the body timeout as its read deadline from the start (handlers
//     that read the body set their own, and clear it once it is in);
//   - if its handler returns without reading the body to the end, ends
//     the read at once: what is already buffered is still read, so that a
//     client whose body had arrived keeps its connection, but the server
//     no longer waits for the rest, and the answer is sent with the
//     connection closed after it.
func (s *Server) boundBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		release, ok := s.q.takeConn(r)
		if !ok {
			_ = rc.SetReadDeadline(time.Now())
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many connections from %v (at most %d), retry later",
				s.q.clientIP(r), s.q.maxConns))
			return
		}
		// An error means the connection takes no deadline (a test
		// recorder): nothing waits on it then.
		_ = rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout))
		b := &trackedBody{ReadCloser: r.Body, done: release}
		r.Body = b
		defer func() {
			if !b.finished() {
				_ = rc.SetReadDeadline(time.Now())
			}
			release()
		}()
		next.ServeHTTP(w, r)
	})
}

// trackedBody is a request body that reports when it has been read to its
// end (or failed), calling done once then.
type trackedBody struct {
	io.ReadCloser
	done func()

	mu  sync.Mutex
	end bool // guarded by mu
}

// Read implements io.Reader.
func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.mu.Lock()
		b.end = true
		b.mu.Unlock()
		b.done()
	}
	return n, err
}

// finished reports whether the body was read to its end or failed.
func (b *trackedBody) finished() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.end
}
