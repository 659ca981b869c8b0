package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/messages-server/messages/ws/client"
)

// runPublish creates empty channels, subscribes -clients readers to each,
// and once all are live appends -rate messages per second in total for
// -duration through POST /channels/{id}/messages, on a fixed schedule (open
// loop): latencies count from the intended send time, so a slow server
// cannot hide its stalls by slowing the bench down. Each channel has one
// sender, so message k of a channel must get seq k; its body is the line
// "k: id\n", and its intended time follows from (channel, k).
func runPublish(ctx context.Context, b *bench) error {
	cfg := b.cfg
	perChannel := max(int64(cfg.Rate*cfg.Duration.Seconds())/int64(cfg.Channels), 1)
	interval := time.Duration(float64(cfg.Channels) / cfg.Rate * float64(time.Second))
	b.res.Clients = int64(cfg.Channels * cfg.Clients)
	b.res.Expected = b.res.Clients * perChannel
	api := b.apiClient(cfg.Conns)
	defer api.CloseIdleConnections()

	ids := make([]string, cfg.Channels)
	for c := range ids {
		ids[c] = cfg.channelID(c)
	}
	acked := make([]atomic.Int64, cfg.Channels)
	var start time.Time // set before any message is sent; read by readers after
	intended := func(c int, k int64) time.Time {
		return start.Add(interval*time.Duration(c)/time.Duration(cfg.Channels) + interval*time.Duration(k-1))
	}
	ok := b.createEmpty(ctx, api, ids)

	var ready, readers sync.WaitGroup
	startCh := make(chan struct{}) // closed once start is set
	b.subscribeLines(ctx, lineReaders{
		ids:  ids,
		read: func(c int) bool { return ok[c] },
		onMessage: func(c, k int, e client.Event) {
			select {
			case <-startCh:
				b.st.e2e.record(k, e.Received.Sub(intended(c, e.Seq)))
			default: // not possible: nothing is sent before start
			}
		},
		acked: func(c int) int64 { return acked[c].Load() },
	}, &ready, &readers)
	if err := waitGroup(ctx, &ready); err != nil {
		readers.Wait()
		return fmt.Errorf("waiting for the subscribers: %w", err)
	}

	start = time.Now().Add(50 * time.Millisecond)
	close(startCh)
	var senders sync.WaitGroup
	for c, id := range ids {
		if !ok[c] {
			continue
		}
		senders.Go(func() { publishChannel(ctx, b, api, c, id, perChannel, intended, &acked[c]) })
	}
	senders.Wait()
	end := time.Now()
	b.res.SteadySeconds = end.Sub(start).Seconds()
	b.res.SteadyDeliveriesPerSec = float64(b.st.between(start, end)) / b.res.SteadySeconds
	for c, id := range ids {
		if !ok[c] {
			continue
		}
		last, err := closeChannel(ctx, api, cfg.URL, id)
		if err != nil {
			b.st.failChannel("%v", err)
		} else if last != acked[c].Load() {
			b.res.Notes = append(b.res.Notes, fmt.Sprintf("channel %s closed at seq %d after %d acknowledged appends", id, last, acked[c].Load()))
		}
	}
	readers.Wait()
	return ctx.Err()
}

// createEmpty creates the channels ids, without generator, 64 at a time,
// and reports which were created; a channel that was not is counted
// failed, with each of its -clients readers.
func (b *bench) createEmpty(ctx context.Context, api *http.Client, ids []string) []bool {
	ok := make([]bool, len(ids))
	var mk sync.WaitGroup
	sem := make(chan struct{}, 64)
	for c := range ids {
		sem <- struct{}{}
		mk.Go(func() {
			defer func() { <-sem }()
			if err := createChannel(ctx, api, b.cfg.URL, ids[c], 0, 0, 0); err != nil {
				b.st.failChannel("%v", err)
				for k := range b.cfg.Clients {
					b.st.fail("channel %s client %d: the channel was not created", ids[c], k)
				}
				return
			}
			ok[c] = true
		})
	}
	mk.Wait()
	return ok
}

// publishChannel sends message k = 1..n of channel c at its intended time,
// and stops at the first failure, so that seq k stays message k.
func publishChannel(ctx context.Context, b *bench, api *http.Client, c int, id string, n int64,
	intended func(int, int64) time.Time, acked *atomic.Int64) {
	u := b.cfg.URL + "/channels/" + id + "/messages"
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for k := int64(1); k <= n; k++ {
		at := intended(c, k)
		if d := time.Until(at); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		var out struct {
			Seq int64 `json:"seq"`
		}
		err := doJSON(ctx, api, http.MethodPost, u, "text/plain; charset=utf-8", []byte(generatedLine(k, id)), &out)
		if err == nil && out.Seq != k {
			err = fmt.Errorf("append %d got seq %d", k, out.Seq)
		}
		if err != nil {
			b.st.appendErrs.Add(1)
			b.st.fail("channel %s append %d: %v (no more appends to this channel)", id, k, strings.TrimSpace(err.Error()))
			return
		}
		b.st.append.record(c, time.Since(at))
		b.st.appends.Add(1)
		acked.Store(k)
	}
}
