package ws

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics count requests by route, method and status. The route is
// the pattern the request matched ("/channels/{id}/messages"), never its
// path: a label per channel id would grow without bound.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics() *httpMetrics {
	return &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "messages", Name: "http_requests_total",
			Help: "HTTP requests served, by route pattern, method and status (101: a WebSocket upgrade).",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "messages", Name: "http_request_duration_seconds",
			Help: "Time from a request's headers to its handler's return, by route pattern and method; " +
				"for streams (WebSocket, text streams, long-polls) the stream's life.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"route", "method"}),
	}
}

func (h *httpMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{h.requests, h.duration}
}

// routeMethods are the methods counted by name; others count as OTHER,
// which keeps the label bounded whatever clients send.
var routeMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true, "OPTIONS": true}

// routeKey is the context key of the *string in which routed records the
// pattern a request matched.
type routeKey struct{}

// routed wraps the mux: it records the pattern the request matched
// (r.Pattern, set in place by http.ServeMux) where instrument, outside
// handlers that may pass on a copy of the request, can read it.
func routed(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p, ok := r.Context().Value(routeKey{}).(*string); ok {
				*p = r.Pattern
			}
		}()
		mux.ServeHTTP(w, r)
	})
}

// instrument serves r with next, then counts it under the pattern the mux
// within next matched (see routed); a request refused before the mux (by
// the Guard or the body bounds) counts under "other".
func (h *httpMetrics) instrument(next http.Handler, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	pattern := new(string)
	r = r.WithContext(context.WithValue(r.Context(), routeKey{}, pattern))
	defer func() {
		route := *pattern
		if route == "" || route == "/" {
			route = "other" // no route matched: 404
		}
		method := r.Method
		if !routeMethods[method] {
			method = "OTHER"
		}
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		h.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
		h.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	}()
	next.ServeHTTP(sw, r)
}

// statusWriter records the status a handler wrote. It implements
// http.Hijacker (the WebSocket upgrade needs it) and Unwrap, for
// http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first status written.
func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 || w.status < 200 && code >= 200 && w.status != http.StatusSwitchingProtocols {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records 200 when nothing was written before.
func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap returns the wrapped ResponseWriter, for http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
