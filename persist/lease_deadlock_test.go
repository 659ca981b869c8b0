package persist_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
)

// TestRenewalNoDeadlock renews a node's leases in a loop while several
// writers of the same node write batches of its channels, each batch
// naming its channels in a random order: renewals and writes lock the
// channels' rows in one order, so PostgreSQL never reports a deadlock
// (40P01) and every write and renewal passes.
func TestRenewalNoDeadlock(t *testing.T) {
	u := persisttest.DatabaseURL(t)
	s, err := persist.Open(t.Context(), persist.Config{URL: u, MaxConns: 8, Node: "a", Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := t.Context()
	const channels, writers, rounds, perBatch = 300, 3, 6, 60
	ids := make([]string, channels)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%03d", i)
		if _, err := s.CreateChannel(ctx, ids[i], nil); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu     sync.Mutex
		failed []error
	)
	record := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		failed = append(failed, err)
	}
	done := make(chan struct{})
	var renewer sync.WaitGroup
	renewer.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := s.RenewLeases(ctx); err != nil {
				record(fmt.Errorf("renew: %w", err))
			}
		}
	})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			order := append([]string(nil), ids...)
			for round := range rounds {
				r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
				seq := int64(round*writers + w + 1)
				for start := 0; start < len(order); start += perBatch {
					var batches []*persist.Batch
					for _, id := range order[start:min(start+perBatch, len(order))] {
						batches = append(batches, &persist.Batch{Channel: id, Epoch: 1,
							Messages: msgs(id, seq, seq, time.Now())})
					}
					if err := s.WriteBatches(ctx, batches); err != nil {
						record(fmt.Errorf("write: %w", err))
					}
				}
			}
		})
	}
	wg.Wait()
	close(done)
	renewer.Wait()
	deadlocks := 0
	for _, err := range failed {
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "40P01" {
			deadlocks++
		}
	}
	if len(failed) > 0 {
		t.Fatalf("%d writes or renewals failed (%d deadlocks), the first: %v", len(failed), deadlocks, failed[0])
	}
}
