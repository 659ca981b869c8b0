package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// runIdle opens -channels × -clients subscribers on empty channels, holds
// them for -duration, and reports the server's resident memory and heap
// per connection: what /metrics shows with every connection open, minus a
// baseline without the connections (see perConn), divided by their number.
func runIdle(ctx context.Context, b *bench, mon *monitor) error {
	cfg := b.cfg
	b.res.Clients = int64(cfg.Channels * cfg.Clients)
	api := b.apiClient(64)
	defer api.CloseIdleConnections()
	ids := make([]string, 0, cfg.Channels)
	// Closed last: both samples without connections have the channels.
	defer func() {
		for _, id := range ids {
			if _, cerr := closeChannel(ctx, api, cfg.URL, id); cerr != nil {
				b.st.failChannel("%v", cerr)
			}
		}
	}()
	for c := range cfg.Channels {
		id := cfg.channelID(c)
		if err := createChannel(ctx, api, cfg.URL, id, 0, 0, 0); err != nil {
			return err
		}
		ids = append(ids, id)
	}
	before, err := scrape(ctx, api, cfg.MetricsURL)
	if err != nil {
		return fmt.Errorf("idle needs the server's metrics: %w", err)
	}

	rctx, stopReaders := context.WithCancel(ctx)
	defer stopReaders()
	var ready, readers sync.WaitGroup
	b.subscribeLines(rctx, lineReaders{
		ids:   ids,
		acked: func(int) int64 { return 0 },
		endErr: func(err error) error {
			if errors.Is(err, context.Canceled) && ctx.Err() == nil {
				return nil // closed by the bench once measured
			}
			return err
		},
	}, &ready, &readers)
	err = waitGroup(ctx, &ready)
	if err == nil {
		t := time.NewTimer(cfg.Duration)
		select {
		case <-t.C:
		case <-ctx.Done():
			err = ctx.Err()
		}
		t.Stop()
	}
	n := b.st.open.Load()
	open, serr := scrape(ctx, api, cfg.MetricsURL)
	stopReaders()
	readers.Wait()
	if serr != nil {
		return errors.Join(err, serr)
	}
	mon.mu.Lock()
	mon.peakRSS = max(mon.peakRSS, open.rss)
	mon.mu.Unlock()
	b.idleCost(ctx, api, before, open, n)
	return err
}

// idleCost records the cost of n connections, from the samples before they
// were opened and with them open, and one taken once they are closed.
func (b *bench) idleCost(ctx context.Context, api *http.Client, before, open serverSample, n int64) {
	b.res.Notes = append(b.res.Notes, fmt.Sprintf("%d connections open when measured", n))
	after, err := scrapeWithoutSubscribers(ctx, api, b.cfg.MetricsURL)
	if err != nil {
		b.res.Notes = append(b.res.Notes, "no baseline after closing the connections: "+err.Error())
		after = before
	}
	if n == 0 {
		return
	}
	pc := perConn(open, []serverSample{before, after}, n)
	s := &b.res.Server
	s.RSSPerConn, s.HeapPerConn, s.RSSPerConnInvalid, s.HeapPerConnInvalid = pc.rss, pc.heap, pc.rssInvalid, pc.heapInvalid
	b.res.Notes = append(b.res.Notes, pc.notes...)
}

// scrapeWithoutSubscribers waits until the server counts no subscriber
// (messages_subscribers, when it exports it), then returns a sample.
func scrapeWithoutSubscribers(ctx context.Context, api *http.Client, metricsURL string) (serverSample, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := scrape(ctx, api, metricsURL)
		if err != nil || !s.hasSubscribers || s.subscribers == 0 {
			return s, err
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("the server still counts %.0f subscribers after 10 s", s.subscribers)
		}
		t := time.NewTimer(50 * time.Millisecond) // polling the server; nothing to wait on
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return s, ctx.Err()
		}
	}
}

// connCost is the server's memory per connection.
type connCost struct {
	rss, heap               float64 // bytes per connection; 0 when invalid
	rssInvalid, heapInvalid bool
	notes                   []string // why a figure is invalid
}

// perConn returns the server's cost per connection of n connections: what
// it used with them open, minus a baseline, divided by n. The baseline of
// each figure is the lowest of the samples taken without the connections
// (before they were opened, after they were closed): the heap can shrink
// during a run, when a collection frees what was garbage before, and then
// growth from the first sample alone understates the cost, or turns
// negative. A figure that is still not positive is not valid: it is
// reported as invalid instead of as a number.
func perConn(open serverSample, without []serverSample, n int64) connCost {
	var c connCost
	figure := func(name string, at func(serverSample) float64) (float64, bool) {
		base := at(without[0])
		for _, s := range without[1:] {
			base = min(base, at(s))
		}
		d := at(open) - base
		if d <= 0 {
			c.notes = append(c.notes, fmt.Sprintf("%s per connection is invalid: %.1f MiB with the connections open, %.1f MiB without them; the server's memory changed more than the connections cost (use more connections)",
				name, at(open)/(1<<20), base/(1<<20)))
			return 0, true
		}
		return d / float64(n), false
	}
	c.rss, c.rssInvalid = figure("RSS", func(s serverSample) float64 { return s.rss })
	c.heap, c.heapInvalid = figure("heap in use", func(s serverSample) float64 { return s.heap })
	return c
}
