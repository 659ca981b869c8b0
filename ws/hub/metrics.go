package hub

import (
	"sync/atomic"

	"github.com/messages-server/messages/internal/metric"
)

// Metrics are the hub's metrics. Create them with NewMetrics; a Metrics
// is safe for concurrent use.
type Metrics struct {
	channelsOpen metric.Gauge
	subscribers  metric.Gauge
	appended     metric.Counter
	catchup      metric.Observer
	resyncs      metric.Counter
	failures     metric.Counter
	deleted      metric.CounterVec
	evicted      metric.Counter
	fenced       metric.Counter
	forwards     metric.Counter
	takeovers    metric.Counter
	lagWaits     metric.Counter
	persistLag   atomic.Pointer[atomic.Int64]
	memBytes     atomic.Pointer[atomic.Int64]
	cache        *cacheMetrics
}

// NewMetrics makes the hub's metrics with r; a nil r records none.
func NewMetrics(r metric.Registry) *Metrics {
	if r == nil {
		r = metric.Discard
	}
	opts := func(name, help string) metric.Opts {
		return metric.Opts{Namespace: "messages", Name: name, Help: help}
	}
	m := &Metrics{
		channelsOpen: r.Gauge(opts("channels_open", "Channels open in this process (with a running actor).")),
		subscribers:  r.Gauge(opts("subscribers", "Subscribers registered for live messages.")),
		appended:     r.Counter(opts("appended_total", "Messages appended to channels.")),
		catchup: r.Histogram(opts("catchup_duration_seconds",
			"Time from subscribing to the end of catch-up (the live marker)."), metric.ExponentialBuckets(.0005, 2.5, 12)),
		resyncs: r.Counter(opts("slow_consumer_resyncs_total",
			"Subscribers detached because their queue was full, to catch up from history.")),
		failures: r.Counter(opts("channel_failures_total",
			"Channels stopped because the store refused their messages for good (not retried).")),
		deleted: r.CounterVec(opts("channels_deleted_total",
			`Channels deleted, by DELETE /channels/{id} (by="request") or by retention (by="retention").`),
			"by", deletedByRequest, deletedByRetention),
		evicted: r.Counter(opts("channels_evicted_total",
			"Idle open channels whose actor left memory; they come back on demand.")),
		cache: newCacheMetrics(r),
	}
	m.addCluster(r)
	r.GaugeFunc(opts("persist_lag_messages", "Messages appended but not yet confirmed persisted."),
		loadOrZero(&m.persistLag))
	r.GaugeFunc(opts("buffered_bytes", "Memory of the messages channels hold (unpersisted and retained), "+
		"at real cost; bounded by -max-buffered-bytes."), loadOrZero(&m.memBytes))
	return m
}

// loadOrZero reads the counter p points to once the hub has set it, 0
// before.
func loadOrZero(p *atomic.Pointer[atomic.Int64]) func() float64 {
	return func() float64 {
		if c := p.Load(); c != nil {
			return float64(c.Load())
		}
		return 0
	}
}

// Usage is what GET /stats reports of the hub: the collectors to read
// (counters, gauges and the catch-up histogram) and the memory held.
type Usage struct {
	// Appended is a counter, Subscribers and ChannelsOpen gauges, Catchup
	// the catch-up duration histogram: the metrics as the Registry given
	// to NewMetrics made them, for the front that made that Registry to
	// read their values.
	Appended     metric.Counter
	Subscribers  metric.Gauge
	ChannelsOpen metric.Gauge
	Catchup      metric.Observer
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
