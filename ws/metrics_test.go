package ws_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/wstest"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func metricValue(t testing.TB, srv *wstest.Server, name string) float64 {
	t.Helper()
	mfs, err := srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

// TestMetrics checks the named series exist, pass promlint, and move with
// traffic.
func TestMetrics(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := []string{
		"messages_channels_open", "messages_subscribers", "messages_appended_total",
		"messages_delivered_total", "messages_delivery_latency_seconds", "messages_catchup_duration_seconds",
		"messages_persist_batch_rows", "messages_persist_duration_seconds", "messages_persist_lag_messages",
		"messages_persist_errors_total", "messages_slow_consumer_resyncs_total", "messages_websocket_connections_total",
		"go_goroutines", "process_resident_memory_bytes",
	}
	body := string(mustGet(t, srv.URL+"/metrics"))
	for _, n := range names {
		if !strings.Contains(body, "\n"+n) && !strings.Contains(body, "# HELP "+n+" ") {
			t.Errorf("/metrics lacks %s", n)
		}
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "messages_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	createGenerator(t, srv.URL, "m", 2000, 50)
	s := dialRaw(ctx, t, srv.URL, "m", 0, "")
	if err := s.readToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	wstest.WaitFor(t, 10*time.Second, "metrics to move", func() bool {
		return metricValue(t, srv, "messages_appended_total") == 50 &&
			metricValue(t, srv, "messages_delivered_total") >= 50 &&
			metricValue(t, srv, "messages_persist_batch_rows") >= 1 &&
			metricValue(t, srv, "messages_catchup_duration_seconds") >= 1 &&
			metricValue(t, srv, "messages_websocket_connections_total") >= 1 &&
			metricValue(t, srv, "messages_channels_open") == 0
	})
}
