package ws

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/messages-server/messages/ws/auth"
	"github.com/messages-server/messages/ws/wire"
)

// Metrics are the hub's and the handlers' Prometheus collectors. Create them
// with NewMetrics; a Metrics is safe for concurrent use.
type Metrics struct {
	channelsOpen prometheus.Gauge
	subscribers  prometheus.Gauge
	appended     prometheus.Counter
	delivered    prometheus.Counter
	latency      prometheus.Histogram
	catchup      prometheus.Histogram
	resyncs      prometheus.Counter
	failures     prometheus.Counter
	deleted      *prometheus.CounterVec
	evicted      prometheus.Counter
	fenced       prometheus.Counter
	forwards     prometheus.Counter
	takeovers    prometheus.Counter
	lagWaits     prometheus.Counter
	conns        *prometheus.CounterVec
	httpErrors   *prometheus.CounterVec
	http         *httpMetrics
	persistLag   atomic.Pointer[atomic.Int64]
	memBytes     atomic.Pointer[atomic.Int64]
	cache        *cacheMetrics
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
		channelsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "messages", Name: "channels_open",
			Help: "Channels open in this process (with a running actor).",
		}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "messages", Name: "subscribers",
			Help: "Subscribers registered for live messages.",
		}),
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "messages", Name: "appended_total",
			Help: "Messages appended to channels.",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "messages", Name: "delivered_total",
			Help: "Messages written to subscribers (history and live).",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "messages", Name: "delivery_latency_seconds",
			Help:    "Time from append to the write of a live message to a subscriber's socket.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		catchup: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "messages", Name: "catchup_duration_seconds",
			Help:    "Time from subscribing to the end of catch-up (the live marker).",
			Buckets: prometheus.ExponentialBuckets(.0005, 2.5, 12),
		}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "messages", Name: "slow_consumer_resyncs_total",
			Help: "Subscribers detached because their queue was full, to catch up from history.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "messages", Name: "channel_failures_total",
			Help: "Channels stopped because the store refused their messages for good (not retried).",
		}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "messages", Name: "channels_deleted_total",
			Help: "Channels deleted, by DELETE /channels/{id} (by=\"request\") or by retention (by=\"retention\").",
		}, []string{"by"}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "messages", Name: "channels_evicted_total",
			Help: "Idle open channels whose actor left memory; they come back on demand.",
		}),
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "messages", Name: "websocket_connections_total",
			Help: "WebSocket connections by how they ended.",
		}, []string{"outcome"}),
		httpErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "messages", Name: "http_request_errors_total",
			Help: "HTTP requests the hub could not serve, by status; 499: the client went away first.",
		}, []string{"status"}),
		cache: newCacheMetrics(reg),
		http:  newHTTPMetrics(),
	}
	cluster := m.addCluster()
	for _, o := range []string{outcomeEnded, outcomeGone, outcomeShutdown, outcomeMoved, outcomeRejected, outcomeDeleted, outcomeExpired, outcomeError} {
		m.conns.WithLabelValues(o)
	}
	for _, by := range []string{deletedByRequest, deletedByRetention} {
		m.deleted.WithLabelValues(by)
	}
	if reg != nil {
		lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "messages", Name: "persist_lag_messages",
			Help: "Messages appended but not yet confirmed persisted.",
		}, func() float64 {
			if p := m.persistLag.Load(); p != nil {
				return float64(p.Load())
			}
			return 0
		})
		mem := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "messages", Name: "buffered_bytes",
			Help: "Memory of the messages channels hold (unpersisted and retained), at real cost; bounded by -max-buffered-bytes.",
		}, func() float64 {
			if p := m.memBytes.Load(); p != nil {
				return float64(p.Load())
			}
			return 0
		})
		reg.MustRegister(m.channelsOpen, m.subscribers, m.appended, m.delivered, m.latency,
			m.catchup, m.resyncs, m.failures, m.deleted, m.evicted, m.conns, m.httpErrors, lag, mem)
		reg.MustRegister(cluster...)
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
