// Package metric is the seam between the server's core packages (the hub
// and persist) and the metrics library. The core declares its metrics
// through a Registry and updates them through the small interfaces below,
// so it links no HTTP code; the front makes the Registry, with Prometheus
// (package prom), and serves what it collects.
//
// Files: metric.go (the interfaces, Discard and ExponentialBuckets).
package metric

// Counter only goes up.
type Counter interface {
	Inc()
	Add(float64)
}

// Gauge goes up and down.
type Gauge interface {
	Set(float64)
	Inc()
	Dec()
	Add(float64)
	Sub(float64)
}

// Observer takes samples into a histogram.
type Observer interface {
	Observe(float64)
}

// CounterVec is a family of counters told apart by one label's value.
type CounterVec interface {
	// With returns the counter of the label value v, created at first use.
	With(v string) Counter
}

// Opts names a metric: its full name is Namespace_Subsystem_Name, the
// empty parts left out.
type Opts struct {
	Namespace, Subsystem, Name string
	// Help is the one line shown with the metric.
	Help string
}

// Registry makes metrics and exposes them. A metric made twice under one
// name is the same metric, so two writers of one process share their
// counters. Implementations are safe for concurrent use.
type Registry interface {
	Counter(o Opts) Counter
	// CounterVec makes a family of counters by the label label; the
	// values listed are exported at zero before their first use.
	CounterVec(o Opts, label string, values ...string) CounterVec
	Gauge(o Opts) Gauge
	// GaugeFunc exports the value f returns when the metrics are read.
	GaugeFunc(o Opts, f func() float64)
	// Histogram makes a histogram with the given upper bounds.
	Histogram(o Opts, buckets []float64) Observer
}

// Discard is a Registry whose metrics record nothing.
var Discard Registry = discard{}

type discard struct{}

type nop struct{}

func (nop) Inc()            {}
func (nop) Dec()            {}
func (nop) Add(float64)     {}
func (nop) Set(float64)     {}
func (nop) Sub(float64)     {}
func (nop) Observe(float64) {}
func (nop) With(string) Counter {
	return nop{}
}

func (discard) Counter(Opts) Counter                          { return nop{} }
func (discard) CounterVec(Opts, string, ...string) CounterVec { return nop{} }
func (discard) Gauge(Opts) Gauge                              { return nop{} }
func (discard) GaugeFunc(Opts, func() float64)                {}
func (discard) Histogram(Opts, []float64) Observer            { return nop{} }

// ExponentialBuckets returns n upper bounds, the first start, each factor
// times the one before.
func ExponentialBuckets(start, factor float64, n int) []float64 {
	b := make([]float64, n)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}
