package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The server metrics the bench reads from /metrics.
const (
	metricCPU  = "process_cpu_seconds_total"
	metricRSS  = "process_resident_memory_bytes"
	metricHeap = "go_memstats_heap_inuse_bytes"
	// metricSubscribers is optional: idle waits for it to reach 0.
	metricSubscribers = "messages_subscribers"
)

// serverSample is one scrape of the server's cost.
type serverSample struct {
	at             time.Time
	cpu, rss, heap float64
	subscribers    float64
	hasSubscribers bool // the server exports metricSubscribers
}

// scrape reads the server's cost from its metrics at metricsURL.
func scrape(ctx context.Context, client *http.Client, metricsURL string) (serverSample, error) {
	m, err := scrapeMetrics(ctx, client, metricsURL, []string{metricCPU, metricRSS, metricHeap}, metricSubscribers)
	if err != nil {
		return serverSample{}, err
	}
	subs, hasSubs := m[metricSubscribers]
	return serverSample{at: time.Now(), cpu: m[metricCPU], rss: m[metricRSS], heap: m[metricHeap],
		subscribers: subs, hasSubscribers: hasSubs}, nil
}

// scrapeMetrics reads the values of required and optional from the
// server's metrics at metricsURL, as parseMetrics does; a required value
// that is missing is an error.
func scrapeMetrics(ctx context.Context, client *http.Client, metricsURL string, required []string, optional ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape metrics: status %s", resp.Status)
	}
	m, err := parseMetrics(resp.Body, slices.Concat(required, optional)...)
	if err != nil {
		return nil, err
	}
	for _, name := range required {
		if _, ok := m[name]; !ok {
			return nil, fmt.Errorf("scrape metrics: %s missing", name)
		}
	}
	return m, nil
}

// parseMetrics reads the Prometheus text exposition format and returns the
// values of the wanted counters, gauges and untyped samples that have no
// labels. Other samples, comments and timestamps are skipped; malformed
// text, or a wanted value that is NaN, is an error.
func parseMetrics(r io.Reader, names ...string) (map[string]float64, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	out := make(map[string]float64, len(names))
	for _, name := range names {
		f, ok := families[name]
		part := ""
		if !ok {
			// A histogram's or a summary's _sum or _count sample: the
			// parser keeps them in the family of the base name.
			for _, suffix := range []string{"_sum", "_count"} {
				if base, cut := strings.CutSuffix(name, suffix); cut {
					f, ok, part = families[base], families[base] != nil, suffix
				}
			}
		}
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) > 0 {
				continue
			}
			v, ok := sampleValue(m, part)
			if !ok {
				continue // a summary or a histogram: no single value
			}
			if math.IsNaN(v) {
				return nil, fmt.Errorf("parse metrics: %s value is NaN", name)
			}
			out[name] = v
		}
	}
	return out, nil
}

// sampleValue returns the value of a counter, gauge or untyped sample,
// or with part "_sum" or "_count" that of a histogram or a summary.
func sampleValue(m *dto.Metric, part string) (float64, bool) {
	switch {
	case part == "_sum" && m.Histogram != nil:
		return m.GetHistogram().GetSampleSum(), true
	case part == "_count" && m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount()), true
	case part == "_sum" && m.Summary != nil:
		return m.GetSummary().GetSampleSum(), true
	case part == "_count" && m.Summary != nil:
		return float64(m.GetSummary().GetSampleCount()), true
	case part != "":
		return 0, false
	case m.Counter != nil:
		return m.GetCounter().GetValue(), true
	case m.Gauge != nil:
		return m.GetGauge().GetValue(), true
	case m.Untyped != nil:
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}
