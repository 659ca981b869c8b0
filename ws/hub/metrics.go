package hub

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the hub's Prometheus collectors. Create them
// with NewMetrics; a Metrics is safe for concurrent use.
type Metrics struct {
	channelsOpen prometheus.Gauge
	subscribers  prometheus.Gauge
	appended     prometheus.Counter
	catchup      prometheus.Histogram
	resyncs      prometheus.Counter
	failures     prometheus.Counter
	deleted      *prometheus.CounterVec
	evicted      prometheus.Counter
	fenced       prometheus.Counter
	forwards     prometheus.Counter
	takeovers    prometheus.Counter
	lagWaits     prometheus.Counter
	persistLag   atomic.Pointer[atomic.Int64]
	memBytes     atomic.Pointer[atomic.Int64]
	cache        *cacheMetrics
}

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
		cache: newCacheMetrics(reg),
	}
	cluster := m.addCluster()
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
		reg.MustRegister(m.channelsOpen, m.subscribers, m.appended,
			m.catchup, m.resyncs, m.failures, m.deleted, m.evicted, lag, mem)
		reg.MustRegister(cluster...)
	}
	return m
}

// Usage is what GET /stats reports of the hub: the collectors to read
// (counters, gauges and the catch-up histogram) and the memory held.
type Usage struct {
	// Appended, Subscribers and ChannelsOpen are a counter and gauges;
	// Catchup is the catch-up duration histogram.
	Appended, Subscribers, ChannelsOpen, Catchup prometheus.Metric
	// PersistLag counts the messages appended but not yet persisted.
	PersistLag int64
	// BufferedBytes is the memory messages and cached pages hold, against
	// MaxBufferedBytes.
	BufferedBytes, MaxBufferedBytes int64
}

// Usage returns the hub's usage now.
func (h *Hub) Usage() Usage {
	m := h.metrics
	return Usage{Appended: m.appended, Subscribers: m.subscribers, ChannelsOpen: m.channelsOpen, Catchup: m.catchup,
		PersistLag: h.bufferedMsgs.Load(), BufferedBytes: h.memBytes.Load(), MaxBufferedBytes: h.cfg.MaxBufferedBytes}
}
