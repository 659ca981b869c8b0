package main

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/messages-server/messages/ws/client"
)

// dialConcurrency bounds the WebSocket handshakes in flight.
const dialConcurrency = 256

// timeMark records the earliest or the latest of many instants. Safe for
// concurrent use.
type timeMark struct {
	mu     sync.Mutex
	t      time.Time
	latest bool
}

func (m *timeMark) mark(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t.IsZero() || (m.latest && t.After(m.t)) || (!m.latest && t.Before(m.t)) {
		m.t = t
	}
}

func (m *timeMark) get() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.t
}

// runFanout creates every channel with a generator at -freq for -duration
// that starts once its -clients readers are subscribed, and subscribes
// them. Throughput is measured over the steady window: from when the last
// subscriber went live to when the first channel delivered its last line.
func runFanout(ctx context.Context, b *bench) error {
	cfg := b.cfg
	lines := max(int64(math.Ceil(cfg.Freq*cfg.Duration.Seconds())), 1)
	b.res.Clients = int64(cfg.Channels * cfg.Clients)
	b.res.Expected = b.res.Clients * lines
	api := b.apiClient(64)
	defer api.CloseIdleConnections()
	lastLive := timeMark{latest: true}
	firstEnd := timeMark{}
	sem := make(chan struct{}, dialConcurrency)
	var wg sync.WaitGroup
	for c := range cfg.Channels {
		id := cfg.channelID(c)
		if err := acquire(ctx, sem); err != nil {
			return err
		}
		// The generator waits for the readers on the first server: those on
		// the others attach to followers, which its channel does not count.
		err := createChannel(ctx, api, cfg.URL, id, cfg.Freq, lines, cfg.readersOnFirst())
		<-sem
		if err != nil {
			b.st.failChannel("channel %s: %v", id, err)
			for k := range cfg.Clients {
				b.st.fail("channel %s client %d: the channel was not created", id, k)
			}
			continue
		}
		for k := range cfg.Clients {
			sem <- struct{}{}
			wg.Go(func() {
				check := lineChecker(id)
				_, err := readWS(ctx, cfg.readerURL(k), b.src, b.st, wsReader{
					channel: id, client: k,
					onDialed: func() { <-sem },
					onLive:   func() { lastLive.mark(time.Now()) },
					onMessage: func(e client.Event) {
						check.add(e.Seq, e.Data)
						if e.Seq == lines {
							firstEnd.mark(e.Received)
						}
					},
				})
				readerDone(b.st, id, k, err, func() *problem { return check.finish(lines) })
			})
		}
	}
	wg.Wait() // every reader stops by itself at the end, or when ctx is done
	t0, t1 := lastLive.get(), firstEnd.get()
	if !t0.IsZero() && t1.Sub(t0) >= time.Second {
		b.res.SteadySeconds = t1.Sub(t0).Seconds()
		b.res.SteadyDeliveriesPerSec = float64(b.st.between(t0, t1)) / b.res.SteadySeconds
	} else {
		b.res.Notes = append(b.res.Notes, "no steady window of a second or more: raise -duration")
	}
	return ctx.Err()
}
