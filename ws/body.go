package ws

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
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
