package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// The server metrics the many scenario reads: lines appended, rows
// committed by the persist writer, and messages appended but not yet
// durable.
const (
	metricAppended  = "messages_appended_total"
	metricPersisted = "messages_persist_batch_rows_sum"
	metricLag       = "messages_persist_lag_messages"
)

// createConcurrency is how many creations the many scenario has in flight.
const createConcurrency = 64

// manyResult is what the many scenario measured over its steady window,
// which starts once every channel is created.
type manyResult struct {
	Created       int64   `json:"created"`
	CreateSeconds float64 `json:"create_seconds"`
	// Retries counts the creations sent again after a 503.
	Retries         atomic.Int64 `json:"-"`
	CreateRetries   int64        `json:"create_retries"`
	SteadySeconds   float64      `json:"steady_seconds"`
	AppendedPerSec  float64      `json:"appended_per_sec"`
	PersistedPerSec float64      `json:"persisted_per_sec"`
	// Lag is the persist lag (messages appended, not yet durable) at each
	// sample of the steady window, one a second.
	Lag    []float64 `json:"persist_lag"`
	MaxLag float64   `json:"max_persist_lag"`
	// CPUCores is the server's CPU over the steady window.
	CPUCores float64 `json:"cpu_cores"`
}

// manySample is one scrape of the many scenario's metrics.
type manySample struct {
	at                       time.Time
	appended, persisted, lag float64
	cpu                      float64
}

// runMany creates -channels channels, each with a generator at -freq lines
// per second and no subscriber, -createConcurrency at a time, then samples
// the server's metrics every second for -duration: lines appended and
// persisted per second, and the persist lag over time. With the lag
// bounded, the persisted rate equals the appended one.
func runMany(ctx context.Context, b *bench) error {
	cfg := b.cfg
	api := b.apiClient(createConcurrency)
	defer api.CloseIdleConnections()
	m := &manyResult{}
	b.res.Many = m
	lines := cfg.Max
	if !cfg.maxSet {
		// Every generator outlives the run.
		lines = int64(min(math.Ceil(cfg.Freq*cfg.Timeout.Seconds()), 10_000_000))
	}
	start := time.Now()
	var created atomic.Int64
	sem := make(chan struct{}, createConcurrency)
	var wg sync.WaitGroup
	for c := range cfg.Channels {
		if err := acquire(ctx, sem); err != nil {
			wg.Wait()
			return err
		}
		wg.Go(func() {
			defer func() { <-sem }()
			id := cfg.channelID(c)
			if err := b.createRetrying(ctx, api, id, lines, &m.Retries); err != nil {
				b.st.failChannel("%v", err)
				return
			}
			created.Add(1)
		})
	}
	wg.Wait()
	m.Created, m.CreateSeconds, m.CreateRetries = created.Load(), time.Since(start).Seconds(), m.Retries.Load()
	fmt.Fprintf(b.stderr, "many: %d channels created in %.1f s; measuring for %v\n", m.Created, m.CreateSeconds, cfg.Duration)
	return b.sampleMany(ctx, api, m)
}

// createRetrying creates generator channel id, sending the request again
// up to 10 times, a second apart, while the server answers 503 (its store
// timeout); a 409 then means the creation that timed out was committed
// after all (ids are the bench's own). A burst of creations on a busy server is slow, and the scenario
// measures what runs once the channels exist.
func (b *bench) createRetrying(ctx context.Context, api *http.Client, id string, lines int64, retries *atomic.Int64) error {
	for try := 0; ; try++ {
		err := createChannel(ctx, api, b.cfg.URL, id, b.cfg.Freq, lines, 0)
		ae, ok := errors.AsType[*apiError](err)
		if ok && ae.Status == http.StatusConflict && try > 0 {
			return nil // the creation that timed out was committed
		}
		if !ok || ae.Status != http.StatusServiceUnavailable || try == 10 {
			return err
		}
		retries.Add(1)
		t := time.NewTimer(time.Second)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// sampleMany samples the server every second for -duration (whole
// seconds, at least one) and fills m.
func (b *bench) sampleMany(ctx context.Context, api *http.Client, m *manyResult) error {
	first, err := scrapeMany(ctx, api, b.cfg.MetricsURL)
	if err != nil {
		return fmt.Errorf("many needs the server's metrics: %w", err)
	}
	last := first
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for range max(int(b.cfg.Duration/time.Second), 1) {
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		s, err := scrapeMany(ctx, api, b.cfg.MetricsURL)
		if err != nil {
			return err
		}
		dt := s.at.Sub(last.at).Seconds()
		fmt.Fprintf(b.stderr, "many: %.0f appended/s, %.0f persisted/s, persist lag %.0f\n",
			(s.appended-last.appended)/dt, (s.persisted-last.persisted)/dt, s.lag)
		m.Lag = append(m.Lag, s.lag)
		m.MaxLag = max(m.MaxLag, s.lag)
		last = s
	}
	m.SteadySeconds = last.at.Sub(first.at).Seconds()
	m.AppendedPerSec = (last.appended - first.appended) / m.SteadySeconds
	m.PersistedPerSec = (last.persisted - first.persisted) / m.SteadySeconds
	m.CPUCores = (last.cpu - first.cpu) / m.SteadySeconds
	return nil
}

// scrapeMany reads the many scenario's metrics.
func scrapeMany(ctx context.Context, client *http.Client, metricsURL string) (manySample, error) {
	v, err := scrapeMetrics(ctx, client, metricsURL, []string{metricAppended, metricPersisted, metricLag, metricCPU})
	if err != nil {
		return manySample{}, err
	}
	return manySample{at: time.Now(), appended: v[metricAppended], persisted: v[metricPersisted], lag: v[metricLag],
		cpu: v[metricCPU]}, nil
}
