package persist_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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

// TestRenewalWaitsForLockedRow holds the row of one of a node's channels
// locked in an open transaction, as a batch write does, while the node
// renews its leases: the renewal renews the other channels without
// waiting, waits for that row alone, and renews it too once the
// transaction commits. Skipping a locked row for good would let the lease
// of a busy channel lapse.
func TestRenewalWaitsForLockedRow(t *testing.T) {
	u := persisttest.DatabaseURL(t)
	ctx := t.Context()
	s := openNode(t, u, "a", time.Hour)
	ids := []string{"c0", "c1", "c2"}
	for _, id := range ids {
		if _, err := s.CreateChannel(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	leases := func(conn *pgx.Conn) map[string]time.Time {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT id, lease_expires_at FROM channels`)
		if err != nil {
			t.Fatal(err)
		}
		m := make(map[string]time.Time)
		var (
			id string
			at time.Time
		)
		if _, err := pgx.ForEachRow(rows, []any{&id, &at}, func() error { m[id] = at; return nil }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	watch, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watch.Close(context.Background()) })
	before := leases(watch)

	blocker, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blocker.Close(context.Background()) })
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE channels SET last_seq = last_seq WHERE id = 'c1'`); err != nil {
		t.Fatal(err)
	}
	type result struct {
		ids []string
		err error
	}
	renewed := make(chan result, 1)
	go func() {
		ids, err := s.RenewLeases(ctx)
		renewed <- result{ids, err}
	}()
	// The renewal must come to wait for c1's row, having renewed the others.
	// (The URL names this test's schema as the application name of every
	// connection: other tests' sessions in the same database are not seen.)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting bool
		if err := watch.QueryRow(ctx,
			`SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			 WHERE datname = current_database() AND wait_event_type = 'Lock'
			   AND application_name = current_setting('application_name')
			   AND query LIKE '%lease_expires_at%')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case r := <-renewed:
			t.Fatalf("RenewLeases returned %q, %v while c1's row was locked; want it to wait for the row", r.ids, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("RenewLeases never waited for c1's locked row")
		}
		time.Sleep(5 * time.Millisecond) // polling the server's view, with a deadline
	}
	during := leases(watch)
	for _, id := range []string{"c0", "c2"} {
		if !during[id].After(before[id]) {
			t.Errorf("lease of %s while c1 is locked: %v, not renewed past %v", id, during[id], before[id])
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-renewed
	if slices.Sort(r.ids); r.err != nil || !slices.Equal(r.ids, ids) {
		t.Fatalf("RenewLeases = %q, %v; want %q", r.ids, r.err, ids)
	}
	if after := leases(watch); !after["c1"].After(before["c1"]) {
		t.Fatalf("lease of c1 after the renewal: %v, not renewed past %v", after["c1"], before["c1"])
	}
}
