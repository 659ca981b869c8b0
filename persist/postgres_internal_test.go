package persist

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/messages-server/messages/persist/persisttest"
)

// BenchmarkWriteBatches compares the two ways WriteBatches inserts
// messages, in transactions of 1000 channels: COPY (what it does first) and
// INSERT ... SELECT unnest ... ON CONFLICT DO NOTHING (its fallback after a
// commit of unknown outcome). Both include the update of the channels.
func BenchmarkWriteBatches(b *testing.B) {
	s, err := Open(b.Context(), Config{URL: persisttest.DatabaseURL(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const channels = 1000
	ids := make([]string, channels)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%04d", i)
		if _, err := s.CreateChannel(b.Context(), ids[i], nil); err != nil {
			b.Fatal(err)
		}
	}
	next := make([]int64, channels)
	batches := func(perBatch int) ([]*Batch, []channelUpdate) {
		bs := make([]*Batch, channels)
		updates := make([]channelUpdate, channels)
		for i, id := range ids {
			ms := make([]Message, perBatch)
			for j := range ms {
				next[i]++
				data := strconv.AppendInt(make([]byte, 0, 24), next[i], 10)
				data = append(append(append(data, ':', ' '), id...), '\n')
				ms[j] = Message{Seq: next[i], Time: time.Now().UnixMicro(), Data: data}
			}
			bs[i] = &Batch{Channel: id, Messages: ms}
			updates[i] = channelUpdate{id: id, last: next[i]}
		}
		return bs, updates
	}
	for _, perBatch := range []int{1, 10} {
		for _, skipStored := range []bool{false, true} {
			name := map[bool]string{false: "copy", true: "insert"}[skipStored]
			b.Run(fmt.Sprintf("%s/batch=%d", name, perBatch), func(b *testing.B) {
				for b.Loop() {
					bs, updates := batches(perBatch)
					err := s.b.(*postgres).writeTx(context.Background(), bs, updates, skipStored, false)
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*channels*perBatch)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}
