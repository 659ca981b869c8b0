package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
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

// scrape reads the server's metrics at metricsURL.
func scrape(ctx context.Context, client *http.Client, metricsURL string) (serverSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return serverSample{}, fmt.Errorf("scrape metrics: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return serverSample{}, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return serverSample{}, fmt.Errorf("scrape metrics: status %s", resp.Status)
	}
	m, err := parseMetrics(resp.Body, metricCPU, metricRSS, metricHeap, metricSubscribers)
	if err != nil {
		return serverSample{}, err
	}
	for _, name := range []string{metricCPU, metricRSS, metricHeap} {
		if _, ok := m[name]; !ok {
			return serverSample{}, fmt.Errorf("scrape metrics: %s missing", name)
		}
	}
	subs, hasSubs := m[metricSubscribers]
	return serverSample{at: time.Now(), cpu: m[metricCPU], rss: m[metricRSS], heap: m[metricHeap],
		subscribers: subs, hasSubscribers: hasSubs}, nil
}

// parseMetrics reads the Prometheus text exposition format and returns the
// values of the wanted samples that have no labels. Comments, other
// samples and timestamps are skipped.
func parseMetrics(r io.Reader, names ...string) (map[string]float64, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := make(map[string]float64, len(names))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok || !want[name] {
			continue // includes samples with labels: name{...}
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("parse metrics: %s has no value", name)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil || math.IsNaN(v) {
			return nil, fmt.Errorf("parse metrics: %s value %q: bad number", name, fields[0])
		}
		out[name] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return out, nil
}
