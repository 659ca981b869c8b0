package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// runCreate creates -channels channels, without generator, as fast as
// -conns concurrent clients can: each client sends its next creation as
// soon as the previous one is answered. Through -create-api channels
// (POST /channels, the default) or streams (Durable Streams PUT
// /v1/stream/{id}). It reports creations per second and the latency of
// each creation (request sent to answer read).
func runCreate(ctx context.Context, b *bench) error {
	cfg := b.cfg
	b.res.Clients = int64(cfg.Channels)
	api := b.apiClient(cfg.Conns)
	defer api.CloseIdleConnections()
	next := make(chan int)
	var wg sync.WaitGroup
	for k := range min(cfg.Conns, cfg.Channels) {
		wg.Go(func() {
			for c := range next {
				id := cfg.channelID(c)
				start := time.Now()
				var err error
				if cfg.CreateAPI == "streams" {
					err = doJSON(ctx, api, http.MethodPut, cfg.URL+"/v1/stream/"+id, "text/plain", nil, nil)
				} else {
					err = createChannel(ctx, api, cfg.URL, id, 0, 0, 0)
				}
				if err != nil {
					b.st.failChannel("create %s: %v", id, err)
					continue
				}
				b.st.create.record(k, time.Since(start))
				b.st.done.Add(1)
			}
		})
	}
	start := time.Now()
	func() {
		defer close(next)
		for c := range cfg.Channels {
			select {
			case next <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	elapsed := time.Since(start)
	b.res.CreateSeconds = elapsed.Seconds()
	b.res.CreationsPerSec = float64(b.st.done.Load()) / elapsed.Seconds()
	if b.st.throttled.Load() > 0 {
		b.res.Notes = append(b.res.Notes, fmt.Sprintf("%d creations were refused with 429 and sent again: "+
			"start the server with a higher -create-rate and -create-burst to measure the store", b.st.throttled.Load()))
	}
	return ctx.Err()
}
