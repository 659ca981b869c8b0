package metric_test

import (
	"slices"
	"testing"

	"github.com/messages-server/messages/internal/metric"
)

func TestExponentialBuckets(t *testing.T) {
	if got := metric.ExponentialBuckets(0.5, 4, 3); !slices.Equal(got, []float64{0.5, 2, 8}) {
		t.Fatalf("buckets %v", got)
	}
}

// TestDiscard: the metrics of Discard take every update and keep nothing.
func TestDiscard(t *testing.T) {
	r := metric.Discard
	r.Counter(metric.Opts{}).Add(1)
	r.CounterVec(metric.Opts{}, "l", "a").With("b").Inc()
	g := r.Gauge(metric.Opts{})
	g.Set(1)
	g.Sub(1)
	r.GaugeFunc(metric.Opts{}, func() float64 { t.Fatal("read"); return 0 })
	r.Histogram(metric.Opts{}, nil).Observe(1)
}
