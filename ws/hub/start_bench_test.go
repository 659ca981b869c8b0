package hub

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
)

// BenchmarkStartTakeOver measures a restart's take-over: Start on a hub
// over a PostgreSQL store holding 10,000 open generator channels, each
// taken over (a read and a new epoch). The generators are too slow to
// write a line during the run, so the time is the take-overs'. One b.N is
// one restart.
func BenchmarkStartTakeOver(b *testing.B) {
	const channels = 10000
	st, err := persist.Open(b.Context(), persist.Config{URL: persisttest.DatabaseURL(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	var wg sync.WaitGroup
	for i := range channels {
		wg.Go(func() {
			gen := &persist.Generator{Freq: 0.001, Max: MaxLines}
			if _, err := st.CreateChannel(b.Context(), fmt.Sprintf("g%05d", i), gen); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	for b.Loop() {
		h := New(Config{Store: st, Writer: &memWriter{Store: newMemStore()}, StoreTimeout: time.Minute})
		if err := h.Start(b.Context()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
		if err := h.Stop(ctx); err != nil {
			b.Error(err)
		}
		cancel()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*channels)/b.Elapsed().Seconds(), "takeovers/s")
}
