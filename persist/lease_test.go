package persist_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
)

// openNode opens the database at u in cluster mode as node, with leases
// of lease.
func openNode(t testing.TB, u, node string, lease time.Duration) *persist.Store {
	t.Helper()
	s, err := persist.Open(t.Context(), persist.Config{URL: u, MaxConns: 4, Node: node, Lease: lease})
	if err != nil {
		t.Fatalf("Open(node %s): %v", node, err)
	}
	t.Cleanup(s.Close)
	return s
}

// takeOverWhenExpired calls OpenEpoch on s until the lease of the current
// owner has expired and s takes id over, failing t after a deadline.
func takeOverWhenExpired(t testing.TB, s *persist.Store, id string) persist.Channel {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := s.OpenEpoch(t.Context(), id)
		if err == nil {
			return c
		}
		if !errors.Is(err, persist.ErrOwned) || time.Now().After(deadline) {
			t.Fatalf("OpenEpoch(%s) by %s: %v", id, s.Node(), err)
		}
		owned, _ := errors.AsType[*persist.OwnedError](err)
		// Wait for the lease to run out (by the database's clock).
		select {
		case <-time.After(time.Until(owned.Expires) + 5*time.Millisecond):
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

func TestClusterNeedsPostgres(t *testing.T) {
	_, err := persist.Open(t.Context(), persist.Config{URL: persisttest.SQLiteURL(t), Node: "n1"})
	if err == nil || !strings.Contains(err.Error(), "cluster mode needs PostgreSQL") {
		t.Fatalf("Open(sqlite, cluster) error = %v, want one saying cluster mode needs PostgreSQL", err)
	}
	s, _ := openStore(t)
	if _, err := s.RenewLeases(t.Context()); err == nil {
		t.Fatal("RenewLeases in single-server mode succeeded")
	}
	if err := s.ReleaseLeases(t.Context()); err == nil {
		t.Fatal("ReleaseLeases in single-server mode succeeded")
	}
}

// TestClusterExcludesSingleServer: the nodes of a cluster share the
// database, but never with a server in single-server mode, in either
// order.
func TestClusterExcludesSingleServer(t *testing.T) {
	u := persisttest.DatabaseURL(t)
	refused := func(cfg persist.Config) {
		t.Helper()
		// Open tries the lock for lockWait (3 s); the deadline only bounds a
		// connection that does not come, and is long for a busy machine.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		cfg.URL = u
		s, err := persist.Open(ctx, cfg)
		if err == nil {
			s.Close()
			t.Fatalf("Open(node %q) succeeded, want ErrLocked", cfg.Node)
		}
		if !errors.Is(err, persist.ErrLocked) {
			t.Fatalf("Open(node %q) = %v, want ErrLocked", cfg.Node, err)
		}
	}
	a := openNode(t, u, "a", time.Second)
	b := openNode(t, u, "b", time.Second)
	refused(persist.Config{})
	a.Close()
	refused(persist.Config{}) // b still holds it
	b.Close()
	// Once no node holds it, a single server does, and keeps nodes out.
	single, err := persist.Open(t.Context(), persist.Config{URL: u, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	refused(persist.Config{Node: "c"})
}

// TestLeases follows one channel between two nodes: the creator owns it,
// the other cannot take it while the lease holds, renewals keep it, a
// release or an expiry lets the other take it over with a new epoch, and
// from then on the first node's batches are fenced.
func TestLeases(t *testing.T) {
	u := persisttest.DatabaseURL(t)
	const lease = 300 * time.Millisecond
	a := openNode(t, u, "a", time.Hour)
	b := openNode(t, u, "b", lease)
	ctx := t.Context()

	c, err := a.CreateChannel(ctx, "c", nil)
	if err != nil || c.Owner != "a" || c.Epoch != 1 || time.Until(c.LeaseExpires) < 50*time.Minute {
		t.Fatalf("CreateChannel = %+v, %v; want owner a, epoch 1, lease of an hour", c, err)
	}
	if _, err := a.CreateChannel(ctx, "d", nil); err != nil {
		t.Fatal(err)
	}
	_, err = b.OpenEpoch(ctx, "c")
	owned, ok := errors.AsType[*persist.OwnedError](err)
	if !ok || owned.Owner != "a" || owned.Channel != "c" || !owned.Expires.Equal(c.LeaseExpires) {
		t.Fatalf("OpenEpoch by b = %v, want an OwnedError naming a until %v", err, c.LeaseExpires)
	}
	if _, err := b.OpenEpoch(ctx, "absent"); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("OpenEpoch(absent) = %v, want ErrNotFound", err)
	}
	// Its own channel a may take again (a restarted actor): a new epoch.
	if c, err = a.OpenEpoch(ctx, "c"); err != nil || c.Epoch != 2 || c.Owner != "a" {
		t.Fatalf("OpenEpoch by the owner = %+v, %v", c, err)
	}
	ids, err := a.RenewLeases(ctx)
	if slices.Sort(ids); err != nil || !slices.Equal(ids, []string{"c", "d"}) {
		t.Fatalf("RenewLeases by a = %q, %v; want c and d", ids, err)
	}
	if ids, err := b.RenewLeases(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("RenewLeases by b = %q, %v; want none", ids, err)
	}

	// a releases: b takes both over at once.
	if err := a.ReleaseLeases(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c", "d"} {
		got, err := b.OpenEpoch(ctx, id)
		if err != nil || got.Owner != "b" {
			t.Fatalf("OpenEpoch(%s) by b after the release = %+v, %v", id, got, err)
		}
	}
	err = a.WriteBatches(ctx, []*persist.Batch{{Channel: "c", Messages: msgs("c", 1, 1, time.Now()), Epoch: 2}})
	if !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("a's batch after b took over: %v, want ErrFenced", err)
	}
	if ids, err := a.RenewLeases(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("RenewLeases by a after losing its channels = %q, %v", ids, err)
	}
	// A channel with a generator is an orphan once its lease expires.
	if _, err := a.CreateChannel(ctx, "g", &persist.Generator{Freq: 1, Max: 5}); err != nil {
		t.Fatal(err)
	}
	if ids, err := b.Orphans(ctx, 10); err != nil || len(ids) != 0 {
		t.Fatalf("Orphans while a holds g = %q, %v", ids, err)
	}
	if err := a.ReleaseLeases(ctx); err != nil {
		t.Fatal(err)
	}
	if ids, err := b.Orphans(ctx, 10); err != nil || !slices.Equal(ids, []string{"g"}) {
		t.Fatalf("Orphans after a released g = %q, %v; want g", ids, err)
	}
	// b stops renewing: once its lease expires, a takes c back.
	got := takeOverWhenExpired(t, a, "c")
	if got.Owner != "a" || got.Epoch != 4 {
		t.Fatalf("take-over by a after b's lease expired = %+v, want owner a at epoch 4", got)
	}
	if n, err := a.Survived(ctx, "c", 2); err != nil || n != 0 {
		t.Fatalf("Survived(epoch 2) = %d, %v", n, err)
	}
}

// TestTakeOverRace has several nodes take one expired channel over at
// once, many times: exactly one wins each round, and the loser's batches
// are fenced while the winner's are stored.
func TestTakeOverRace(t *testing.T) {
	u := persisttest.DatabaseURL(t)
	const nodes, rounds = 4, 10
	stores := make([]*persist.Store, nodes)
	for i := range stores {
		stores[i] = openNode(t, u, fmt.Sprintf("n%d", i), time.Hour)
	}
	ctx := t.Context()
	if _, err := stores[0].CreateChannel(ctx, "race", nil); err != nil {
		t.Fatal(err)
	}
	var last int64
	holder := stores[0]
	for round := range rounds {
		if err := holder.ReleaseLeases(ctx); err != nil {
			t.Fatal(err)
		}
		winners := make(chan persist.Channel, nodes)
		var wg sync.WaitGroup
		for _, s := range stores {
			wg.Go(func() {
				c, err := s.OpenEpoch(ctx, "race")
				switch {
				case err == nil:
					winners <- c
				case !errors.Is(err, persist.ErrOwned):
					t.Errorf("OpenEpoch by %s: %v", s.Node(), err)
				}
			})
		}
		wg.Wait()
		close(winners)
		var won []persist.Channel
		for c := range winners {
			won = append(won, c)
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d winners %+v, want exactly one", round, len(won), won)
		}
		w := won[0]
		// Every node writes the next message at the epoch it last saw:
		// only the winner's is stored.
		stored := 0
		for _, s := range stores {
			epoch := w.Epoch - 1
			if s.Node() == w.Owner {
				epoch = w.Epoch
			}
			b := &persist.Batch{Channel: "race", Messages: msgs("race", last+1, last+1, time.Now()), Epoch: epoch}
			err := s.WriteBatches(ctx, []*persist.Batch{b})
			switch {
			case err == nil:
				stored++
			case !errors.Is(err, persist.ErrFenced):
				t.Fatalf("round %d: write by %s: %v", round, s.Node(), err)
			}
		}
		if stored != 1 {
			t.Fatalf("round %d: %d batches stored, want 1", round, stored)
		}
		last++
		// The next round starts with the winner's release.
		holder = stores[slices.IndexFunc(stores, func(s *persist.Store) bool { return s.Node() == w.Owner })]
	}
	got, err := stores[0].Messages(context.WithoutCancel(ctx), "race", 0, 100)
	if err != nil || int64(len(got)) != last {
		t.Fatalf("Messages = %d, %v; want %d", len(got), err, last)
	}
}
