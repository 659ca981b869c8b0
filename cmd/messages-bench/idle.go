package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// runIdle opens -channels × -clients subscribers on empty channels, holds
// them for -duration, and reports how much the server's resident memory and
// heap grew per connection, from /metrics before and after.
func runIdle(ctx context.Context, b *bench, mon *monitor) error {
	cfg := b.cfg
	b.res.Clients = int64(cfg.Channels * cfg.Clients)
	api := newHTTPClient(0, 64)
	defer api.CloseIdleConnections()
	ids := make([]string, 0, cfg.Channels)
	for c := range cfg.Channels {
		id := cfg.Prefix + strconv.Itoa(c)
		if err := createChannel(ctx, api, cfg.URL, id, 0, 0, 0); err != nil {
			return err
		}
		ids = append(ids, id)
	}
	before, err := scrape(ctx, api, cfg.URL)
	if err != nil {
		return fmt.Errorf("idle needs the server's metrics: %w", err)
	}

	var ready, readers sync.WaitGroup
	dials := make(chan struct{}, dialConcurrency)
	for _, id := range ids {
		for k := range cfg.Clients {
			ready.Add(1)
			dials <- struct{}{}
			readers.Go(func() {
				isReady := sync.OnceFunc(ready.Done)
				defer isReady()
				check := lineChecker(id)
				_, err := readWS(ctx, cfg.URL, b.src, b.st, wsReader{
					channel: id, client: k, onDialed: func() { <-dials }, onLive: isReady,
				})
				readerDone(b.st, id, k, err, func() *problem { return check.finish(0) })
			})
		}
	}
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
	open := b.st.open.Load()
	after, serr := scrape(ctx, api, cfg.URL)
	mon.mu.Lock()
	mon.peakRSS = max(mon.peakRSS, after.rss)
	mon.mu.Unlock()
	if serr == nil && open > 0 {
		b.res.Server.RSSPerConn = (after.rss - before.rss) / float64(open)
		b.res.Server.HeapPerConn = (after.heap - before.heap) / float64(open)
	}
	b.res.Notes = append(b.res.Notes, fmt.Sprintf("%d connections open when measured", open))
	for _, id := range ids {
		if _, cerr := closeChannel(ctx, api, cfg.URL, id); cerr != nil {
			b.st.fail("%v", cerr)
		}
	}
	readers.Wait()
	if err == nil {
		err = serr
	}
	return err
}
