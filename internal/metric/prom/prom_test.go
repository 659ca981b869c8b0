package prom_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/messages-server/messages/internal/metric"
	"github.com/messages-server/messages/internal/metric/prom"
)

// TestShared: a metric made twice under one name is one collector, so a
// second writer of one process adds to the first one's counter.
func TestShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := prom.New(reg)
	o := metric.Opts{Namespace: "m", Name: "things_total", Help: "Things."}
	a, b := r.Counter(o), r.Counter(o)
	a.Inc()
	b.Add(2)
	if v := testutil.ToFloat64(a.(prometheus.Collector)); v != 3 {
		t.Fatalf("shared counter = %v, want 3", v)
	}
	if n, err := testutil.GatherAndCount(reg, "m_things_total"); err != nil || n != 1 {
		t.Fatalf("registered %d series (%v), want 1", n, err)
	}
}

// TestExport: each kind reaches the registry under its full name, a
// family's listed label values at zero before their first use.
func TestExport(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := prom.New(reg)
	r.CounterVec(metric.Opts{Namespace: "m", Name: "gone_total", Help: "Gone."}, "by", "request", "retention").With("request").Inc()
	g := r.Gauge(metric.Opts{Namespace: "m", Subsystem: "s", Name: "open", Help: "Open."})
	g.Set(5)
	g.Sub(2)
	r.GaugeFunc(metric.Opts{Namespace: "m", Name: "lag", Help: "Lag."}, func() float64 { return 7 })
	r.Histogram(metric.Opts{Namespace: "m", Name: "seconds", Help: "Seconds."}, metric.ExponentialBuckets(1, 2, 3)).Observe(3)
	want := `
# HELP m_gone_total Gone.
# TYPE m_gone_total counter
m_gone_total{by="request"} 1
m_gone_total{by="retention"} 0
# HELP m_lag Lag.
# TYPE m_lag gauge
m_lag 7
# HELP m_s_open Open.
# TYPE m_s_open gauge
m_s_open 3
# HELP m_seconds Seconds.
# TYPE m_seconds histogram
m_seconds_bucket{le="1"} 0
m_seconds_bucket{le="2"} 0
m_seconds_bucket{le="4"} 1
m_seconds_bucket{le="+Inf"} 1
m_seconds_sum 3
m_seconds_count 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// TestUnregistered: with no registerer the metrics still count, for a
// front that reads them itself.
func TestUnregistered(t *testing.T) {
	c := prom.New(nil).Counter(metric.Opts{Name: "n_total", Help: "N."})
	c.Inc()
	if v := testutil.ToFloat64(c.(prometheus.Collector)); v != 1 {
		t.Fatalf("counter = %v, want 1", v)
	}
}
