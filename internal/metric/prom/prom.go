// Package prom implements metric.Registry with Prometheus collectors.
//
// Files: prom.go.
package prom

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/messages-server/messages/internal/metric"
)

// Registry makes Prometheus collectors and registers them on a
// prometheus.Registerer. The collectors it returns are prometheus.Metric
// values too, so the front can read them (GET /stats).
type Registry struct {
	reg prometheus.Registerer
}

// New returns a Registry registering on reg. With a nil reg the metrics
// are made and work, but nothing exports them.
func New(reg prometheus.Registerer) *Registry { return &Registry{reg: reg} }

// register registers c, or returns the collector already registered under
// its name (a second writer of one process shares the first one's).
func register[C prometheus.Collector](r *Registry, c C) C {
	if r.reg == nil {
		return c
	}
	if err := r.reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a name taken by another kind of metric is a programming error
	}
	return c
}

// Counter implements metric.Registry.
func (r *Registry) Counter(o metric.Opts) metric.Counter {
	return register(r, prometheus.NewCounter(prometheus.CounterOpts(opts(o))))
}

// CounterVec implements metric.Registry.
func (r *Registry) CounterVec(o metric.Opts, label string, values ...string) metric.CounterVec {
	v := register(r, prometheus.NewCounterVec(prometheus.CounterOpts(opts(o)), []string{label}))
	for _, value := range values {
		v.WithLabelValues(value)
	}
	return counterVec{v}
}

// Gauge implements metric.Registry.
func (r *Registry) Gauge(o metric.Opts) metric.Gauge {
	return register(r, prometheus.NewGauge(prometheus.GaugeOpts(opts(o))))
}

// GaugeFunc implements metric.Registry.
func (r *Registry) GaugeFunc(o metric.Opts, f func() float64) {
	register(r, prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts(o)), f))
}

// Histogram implements metric.Registry.
func (r *Registry) Histogram(o metric.Opts, buckets []float64) metric.Observer {
	return register(r, prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: o.Namespace, Subsystem: o.Subsystem, Name: o.Name, Help: o.Help, Buckets: buckets,
	}))
}

func opts(o metric.Opts) prometheus.Opts {
	return prometheus.Opts{Namespace: o.Namespace, Subsystem: o.Subsystem, Name: o.Name, Help: o.Help}
}

type counterVec struct{ v *prometheus.CounterVec }

func (c counterVec) With(value string) metric.Counter { return c.v.WithLabelValues(value) }
