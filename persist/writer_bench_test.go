package persist_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/messages-server/messages/internal/metric/prom"
	"github.com/messages-server/messages/persist"
)

// BenchmarkWriter measures persist throughput: rows per second from many
// channels through a Writer into PostgreSQL, each channel keeping one batch
// in flight as the channel actors do. One b.N is one ~20-byte message; the
// time includes Close, so every row is committed.
func BenchmarkWriter(b *testing.B) {
	for _, bc := range []struct {
		channels, perBatch, workers int
	}{
		// At 100 ms flushes, 1000 channels carrying 250k rows/s flush 25
		// rows each; batches grow further while the previous one is in
		// flight, so 25 and 50 are the shapes of a busy server.
		{1000, 1, 0}, // chat-like: one message per flush
		{1000, 10, 0},
		{1000, 25, 0},
		{1000, 50, 0},
		{1000, 25, 1}, // worker counts, against the default of 4
		{1000, 25, 2},
		{1000, 25, 8},
	} {
		name := fmt.Sprintf("channels=%d/batch=%d/workers=%d", bc.channels, bc.perBatch, bc.workers)
		b.Run(name, func(b *testing.B) {
			benchWriter(b, bc.channels, bc.perBatch, persist.WriterConfig{Workers: bc.workers})
		})
	}
}

func benchWriter(b *testing.B, channels, perBatch int, cfg persist.WriterConfig) {
	s, _ := openStore(b)
	ctx := b.Context()
	ids := make([]string, channels)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%04d", i)
		if _, err := s.CreateChannel(ctx, ids[i], nil); err != nil {
			b.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	cfg.Metrics = prom.New(reg)
	w := persist.NewWriter(s, cfg)
	const producers = 4
	var (
		wg      sync.WaitGroup
		perProd = (b.N + producers - 1) / producers
	)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for p := range producers {
		quota := min(perProd, b.N-p*perProd)
		mine := ids[p*channels/producers : (p+1)*channels/producers]
		wg.Go(func() { produce(b, w, mine, perBatch, quota) })
	}
	wg.Wait()
	if err := w.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
	txs, rows := metric(b, reg, "messages_persist_batch_rows")
	b.ReportMetric(rows/txs, "rows/tx")
}

// produce enqueues quota messages over the channels ids, perBatch at a time,
// with at most one batch per channel in the writer.
func produce(b *testing.B, w *persist.Writer, ids []string, perBatch, quota int) {
	ready := make(chan int, len(ids))
	for i := range ids {
		ready <- i
	}
	next := make([]int64, len(ids))
	now := time.Now().UnixMicro()
	for quota > 0 {
		i := <-ready
		n := min(perBatch, quota)
		quota -= n
		ms := make([]persist.Message, n)
		for j := range ms {
			next[i]++
			data := strconv.AppendInt(make([]byte, 0, 24), next[i], 10)
			data = append(append(append(data, ':', ' '), ids[i]...), '\n')
			ms[j] = persist.Message{Seq: next[i], Time: now, Data: data}
		}
		batch := &persist.Batch{Channel: ids[i], Messages: ms, Done: func(err error) {
			if err != nil {
				b.Error(err)
			}
			ready <- i
		}}
		if !w.TryEnqueue(batch) {
			b.Error("queue full") // at most one batch per channel: cannot happen
			return
		}
	}
}
