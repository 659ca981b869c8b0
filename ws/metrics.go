package ws

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/wire"
)

// Metrics are the Prometheus collectors of the HTTP and WebSocket front.
// Create them with NewMetrics; a Metrics is safe for concurrent use. The
// hub's own collectors are hub.Metrics.
type Metrics struct {
	delivered  prometheus.Counter
	latency    prometheus.Histogram
	conns      *prometheus.CounterVec
	httpErrors *prometheus.CounterVec
	http       *httpMetrics
}

// WebSocket connection outcomes, the values of the outcome label.
const (
	outcomeEnded    = "ended"         // the channel ended; closed with 1000
	outcomeGone     = "client_closed" // the client went away
	outcomeShutdown = "shutdown"      // the server stopped; closed with 1001
	outcomeMoved    = "moved"         // another node took the channel over; closed with 1001
	outcomeRejected = "rejected"      // bad request, unknown channel, reset
	outcomeDeleted  = "deleted"       // the channel was deleted; closed with 4410
	outcomeExpired  = "token_expired" // the token expired; closed with 4401
	outcomeError    = "error"         // write failure, store failure
)

// NewMetrics creates the collectors and registers them on reg, unless reg is
// nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "messages", Name: "delivered_total",
			Help: "Messages written to subscribers (history and live).",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "messages", Name: "delivery_latency_seconds",
			Help:    "Time from append to the write of a live message to a subscriber's socket.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "messages", Name: "websocket_connections_total",
			Help: "WebSocket connections by how they ended.",
		}, []string{"outcome"}),
		httpErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "messages", Name: "http_request_errors_total",
			Help: "HTTP requests the hub could not serve, by status; 499: the client went away first.",
		}, []string{"status"}),
		http: newHTTPMetrics(),
	}
	for _, o := range []string{outcomeEnded, outcomeGone, outcomeShutdown, outcomeMoved, outcomeRejected, outcomeDeleted, outcomeExpired, outcomeError} {
		m.conns.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.delivered, m.latency, m.conns, m.httpErrors)
		reg.MustRegister(m.http.collectors()...)
	}
	return m
}

func observeDelivery(m *Metrics, msgs []*wire.Message, live bool) {
	if live {
		now := time.Now().UnixMicro()
		for _, msg := range msgs {
			for range msg.Len() {
				m.latency.Observe(float64(now-msg.Time) / 1e6)
			}
		}
	}
	n := 0
	for _, msg := range msgs {
		n += msg.Len()
	}
	m.delivered.Add(float64(n))
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Metrics == nil {
		writeError(w, http.StatusNotFound, "metrics are not served here")
		return
	}
	if !s.authorize(w, r, auth.Admin, "", false) {
		return
	}
	s.cfg.Metrics.ServeHTTP(w, r)
}
