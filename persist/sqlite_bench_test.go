package persist_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
)

// BenchmarkSQLiteWriteBatches measures WriteBatches on SQLite in
// transactions of 1000 channels, the shape the Writer gives a busy server,
// each run on a fresh file.
func BenchmarkSQLiteWriteBatches(b *testing.B) {
	const channels = 1000
	for _, perBatch := range []int{1, 10, 25} {
		b.Run(fmt.Sprintf("channels=%d/batch=%d", channels, perBatch), func(b *testing.B) {
			s, err := persist.Open(b.Context(), persist.Config{URL: persisttest.SQLiteURL(b)})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ids := make([]string, channels)
			next := make([]int64, channels)
			for i := range ids {
				ids[i] = fmt.Sprintf("bench-%04d", i)
				if _, err := s.CreateChannel(b.Context(), ids[i], nil); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				bs := make([]*persist.Batch, channels)
				for i, id := range ids {
					ms := make([]persist.Message, perBatch)
					for j := range ms {
						next[i]++
						data := strconv.AppendInt(make([]byte, 0, 24), next[i], 10)
						data = append(append(append(data, ':', ' '), id...), '\n')
						ms[j] = persist.Message{Seq: next[i], Time: time.Now().UnixMicro(), Data: data}
					}
					bs[i] = &persist.Batch{Channel: id, Messages: ms}
				}
				if err := s.WriteBatches(b.Context(), bs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*channels*perBatch)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
