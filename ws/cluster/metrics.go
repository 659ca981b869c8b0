package cluster

import (
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Node's Prometheus collectors; the hub counts forwards,
// take-overs and fenced channels itself.
type metrics struct {
	publishErrors prometheus.Counter
	follows       prometheus.Counter
	served        *prometheus.CounterVec
	renewals      *prometheus.CounterVec
	serving       atomic.Int64
}

func newMetrics(n *Node, reg prometheus.Registerer) *metrics {
	m := &metrics{
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "messages", Subsystem: "cluster", Name: "publish_errors_total",
			Help: "Channel events that could not be handed to NATS (followers resync).",
		}),
		follows: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "messages", Subsystem: "cluster", Name: "follows_total",
			Help: "Followers started (including resyncs).",
		}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "messages", Subsystem: "cluster", Name: "served_total",
			Help: "Remote calls served for other nodes, by operation.",
		}, []string{"op"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "messages", Subsystem: "cluster", Name: "lease_renewals_total",
			Help: "Bulk lease renewals, by result: ok, failed (database), skipped (NATS unreachable).",
		}, []string{"result"}),
	}
	for _, op := range []string{opAppend, opClose, opDelete, opSnapshot, opPing} {
		m.served.WithLabelValues(op)
	}
	for _, r := range []string{"ok", "failed", "skipped"} {
		m.renewals.WithLabelValues(r)
	}
	if reg == nil {
		return m
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "messages", Subsystem: "cluster", Name: name, Help: help,
		}, f)
	}
	reg.MustRegister(m.publishErrors, m.follows, m.served, m.renewals,
		gauge("owned_channels", "Channels this node runs as their owner.", func() float64 {
			if hub := n.started(); hub != nil {
				return float64(len(hub.Owned()))
			}
			return 0
		}),
		gauge("followers", "Channels this node follows for its local subscribers.", func() float64 {
			if hub := n.started(); hub != nil {
				return float64(hub.Followers())
			}
			return 0
		}),
		gauge("nats_connected", "1 while the NATS connection is up, else 0.", func() float64 {
			if n.nc.Status() == nats.CONNECTED {
				return 1
			}
			return 0
		}),
		gauge("nats_reconnects", "Times the NATS connection was re-established.", func() float64 {
			return float64(n.nc.Stats().Reconnects)
		}),
	)
	return m
}
