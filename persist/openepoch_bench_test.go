package persist_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/persist/storetest"
)

// BenchmarkOpenEpoch measures take-overs as a restart issues them: one
// b.N is a round of 10,000 concurrent OpenEpoch calls, one per open
// generator channel, on PostgreSQL, in single-server mode and in cluster
// mode (where each take-over also checks and sets the lease).
func BenchmarkOpenEpoch(b *testing.B) {
	const n = 10000
	for _, node := range []string{"", "node-a"} {
		name := "single"
		if node != "" {
			name = "cluster"
		}
		b.Run(fmt.Sprintf("%s/channels=%d", name, n), func(b *testing.B) {
			s := storetest.OpenConfig(b, persist.Config{URL: persisttest.DatabaseURL(b), Node: node})
			ids := make([]string, n)
			var wg sync.WaitGroup
			for i := range ids {
				ids[i] = fmt.Sprintf("gen-%05d", i)
				wg.Go(func() {
					if _, err := s.CreateChannel(b.Context(), ids[i], &persist.Generator{Freq: 20, Max: 1e9}); err != nil {
						b.Error(err)
					}
				})
			}
			wg.Wait()
			b.ResetTimer()
			for b.Loop() {
				for _, id := range ids {
					wg.Go(func() {
						if _, err := s.OpenEpoch(b.Context(), id); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "takeovers/s")
		})
	}
}
