package hub

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
)

// slowBatches is a BatchWriter that takes perRow for every message it is
// given, as a database that persists fewer rows a second than the
// generators make.
type slowBatches struct{ perRow time.Duration }

func (s slowBatches) WriteBatches(ctx context.Context, bs []*persist.Batch) error {
	n := 0
	for _, b := range bs {
		n += len(b.Messages)
	}
	time.Sleep(time.Duration(n) * s.perRow)
	return nil
}

// BenchmarkGeneratorsAtBound runs 10,000 generator channels at 20 lines/s
// (200,000 lines/s offered) against a persist writer whose store takes
// 80 µs per row over 4 workers (about 50,000 rows/s), so that the
// messages held reach the memory bound (64 MiB here) and the generators
// pause and resume, as in the many scenario on a database that cannot
// keep up. It reports the lines appended per second and the process's CPU
// per line over 5 s once the bound is reached: the hub's cost at the
// bound, without a database. Run it with -benchtime 1x.
func BenchmarkGeneratorsAtBound(b *testing.B) {
	const channels, freq, window = 10000, 20, 5 * time.Second
	for b.Loop() {
		st := newMemStore()
		w := persist.NewWriter(slowBatches{perRow: 80 * time.Microsecond}, persist.WriterConfig{})
		h := New(Config{Store: st, Writer: w, MaxGeneratorRate: 1e9, StoreTimeout: time.Minute,
			MaxBufferedBytes: 64 << 20})
		ctx := context.Background()
		for i := range channels {
			gen := &persist.Generator{Freq: freq, Max: MaxLines}
			if _, err := h.Create(ctx, fmt.Sprintf("g%05d", i), gen, 0); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(3 * time.Second) // the bound is reached
		b.Logf("held %d MiB of %d", h.memBytes.Load()>>20, 64)
		before, cpu0, t0 := appended(h), cpuTime(), time.Now()
		time.Sleep(window)
		lines, cpu, wall := appended(h)-before, cpuTime()-cpu0, time.Since(t0)
		b.ReportMetric(float64(lines)/wall.Seconds(), "lines/s")
		b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(lines), "cpu-ns/line")
		stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := h.Stop(stopCtx); err != nil {
			b.Error(err)
		}
		if err := w.Close(stopCtx); err != nil {
			b.Error(err)
		}
		cancel()
	}
}
