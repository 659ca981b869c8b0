package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/messages-server/messages/internal/metric/prom"
	"github.com/messages-server/messages/persist"
)

// creationTransactions returns how many creation transactions the store
// registered with reg committed, and how many creations they held.
func creationTransactions(t testing.TB, reg *prometheus.Registry) (txs, channels uint64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "messages_persist_create_batch_channels" {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), uint64(h.GetSampleSum())
		}
	}
	t.Fatal("no metric messages_persist_create_batch_channels")
	return 0, 0
}

// burst runs the creations of ids (a channel, or a stream for an id
// starting with "s") all at once and returns each one's outcome, by index.
// The generator of the i-th has Max i%300+1.
func burst(s *persist.Store, t testing.TB, ids []string) []error {
	errs := make([]error, len(ids))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			<-start
			var c persist.Channel
			var err error
			if id[0] == 's' {
				c, err = s.CreateStream(t.Context(), id, persist.StreamConfig{ContentType: "application/json", TTL: 60})
			} else {
				c, err = s.CreateChannel(t.Context(), id, &persist.Generator{Freq: 20, Max: int64(i%300 + 1)})
			}
			if err == nil && (c.ID != id || c.Epoch < 1 || !c.Open() || c.CreatedAt.IsZero()) {
				err = fmt.Errorf("created record %+v", c)
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// testCreateBurst creates 300 channels and streams at once, some ids
// twice and one already taken: every free id is created exactly once,
// with its own generator or stream configuration; each second creation of
// an id, in the same burst or after it, gets ErrExists; and the burst
// takes far fewer transactions than creations.
func testCreateBurst(t *testing.T, newURL func(testing.TB) string) {
	reg := prometheus.NewRegistry()
	s := OpenConfig(t, persist.Config{URL: newURL(t), MaxConns: 8, Metrics: prom.New(reg)})
	ctx := t.Context()
	create(t, s, "taken")
	before, _ := creationTransactions(t, reg)
	var ids []string
	for i := range 300 {
		prefix := "c"
		if i%3 == 0 {
			prefix = "s"
		}
		ids = append(ids, fmt.Sprintf("%s%03d", prefix, i))
	}
	ids = append(ids, ids[:20]...) // twice in the burst
	ids = append(ids, "taken")
	errs := burst(s, t, ids)
	created := make(map[string]int)
	for i, err := range errs {
		switch {
		case err == nil:
			created[ids[i]]++
		case errors.Is(err, persist.ErrExists):
		default:
			t.Errorf("create %s: %v", ids[i], err)
		}
	}
	if len(created) != 300 || created["taken"] != 0 {
		t.Fatalf("created %d distinct ids (taken: %d), want 300 and not taken", len(created), created["taken"])
	}
	for id, n := range created {
		if n != 1 {
			t.Errorf("%s created %d times", id, n)
		}
	}
	for i, id := range ids[:300] {
		c, err := s.Channel(ctx, id)
		if err != nil {
			t.Fatalf("Channel(%s): %v", id, err)
		}
		st, err := s.Stream(ctx, id)
		if err != nil {
			t.Fatalf("Stream(%s): %v", id, err)
		}
		if id[0] == 's' {
			if c.Generator != nil || st.ContentType != "application/json" || st.TTL != 60 {
				t.Errorf("stream %s = %+v, %+v", id, c, st)
			}
		} else if c.Generator == nil || c.Generator.Max != int64(i+1) || st.ContentType != "" {
			t.Errorf("channel %s = %+v, %+v", id, c, st)
		}
		if _, err := s.Survived(ctx, id, c.Epoch); err != nil {
			t.Errorf("Survived(%s, %d): %v", id, c.Epoch, err)
		}
	}
	after, n := creationTransactions(t, reg)
	t.Logf("%d creations in %d transactions", n, after-before)
	if txs := after - before; txs > uint64(len(ids))/5 {
		t.Errorf("%d creations took %d transactions, want at most %d", len(ids), txs, len(ids)/5)
	}
	if _, err := s.CreateChannel(ctx, "c001", nil); !errors.Is(err, persist.ErrExists) {
		t.Errorf("CreateChannel(c001) after the burst: %v, want ErrExists", err)
	}
}

// testCreateBurstAfterDelete creates, in one burst, channels whose ids
// were deleted at a high epoch: each new channel starts above it.
func testCreateBurstAfterDelete(t *testing.T, s *persist.Store) {
	ctx := t.Context()
	create(t, s, "gone")
	for range 3 {
		if _, err := s.OpenEpoch(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteChannel(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	ids := []string{"gone", "a", "b", "c", "s1"}
	for i, err := range burst(s, t, ids) {
		if err != nil {
			t.Fatalf("create %s: %v", ids[i], err)
		}
	}
	for _, id := range ids {
		c, err := s.Channel(ctx, id)
		if err != nil || c.Epoch <= 4 {
			t.Errorf("Channel(%s) = %+v, %v; want an epoch above 4", id, c, err)
		}
	}
}
