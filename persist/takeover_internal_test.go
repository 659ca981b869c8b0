package persist

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/persist/persisttest"
)

// takeOverModes runs f against PostgreSQL in single-server and cluster
// mode (as node "a") and against SQLite.
func takeOverModes(t *testing.T, f func(t *testing.T, cfg Config)) {
	t.Run("postgres", func(t *testing.T) { f(t, Config{URL: persisttest.DatabaseURL(t)}) })
	t.Run("cluster", func(t *testing.T) { f(t, Config{URL: persisttest.DatabaseURL(t), Node: "a", Lease: time.Minute}) })
	t.Run("sqlite", func(t *testing.T) { f(t, Config{URL: persisttest.SQLiteURL(t)}) })
}

// seed creates the channels ids past g's gate and count, owned by node
// (if not "") with a lease of a minute.
func seed(t *testing.T, g *gatedBackend, node string, ids ...string) {
	t.Helper()
	slices.Sort(ids)
	cs := make([]newChannel, len(ids))
	for i, id := range ids {
		cs[i] = newChannel{id: id, gen: &Generator{Freq: 20, Max: 1000}, cfg: StreamConfig{Epoch: 1}}
	}
	if _, err := g.backend.createChannels(t.Context(), cs, node, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// TestOpenEpochGroupCommit: take-overs that arrive while a take-over
// transaction runs are written together in the next one; each gets the
// next epoch once, a missing channel gets ErrNotFound and a second
// take-over of the same channel, left to the transaction after, the
// epoch after.
func TestOpenEpochGroupCommit(t *testing.T) {
	takeOverModes(t, func(t *testing.T, cfg Config) {
		s, g := gatedStore(t, cfg, "")
		const n = 100
		ids := []string{"first"}
		for i := range n {
			ids = append(ids, fmt.Sprintf("t%03d", i))
		}
		seed(t, g, cfg.Node, ids...)
		cs := make([]Channel, n+3)
		errs := make([]error, n+3)
		var wg sync.WaitGroup
		open := func(i int, id string) {
			wg.Go(func() { cs[i], errs[i] = s.OpenEpoch(t.Context(), id) })
		}
		open(n, "first")
		waitStarted(t, g) // the first is in its transaction
		for i := range n {
			open(i, fmt.Sprintf("t%03d", i))
		}
		open(n+1, "absent")
		open(n+2, "t042") // again, in the same burst
		waitPending(t, s.takers, n+2)
		close(g.release)
		wg.Wait()
		for i, err := range errs[:n+1] {
			if err != nil || cs[i].Epoch != 2 && i != 42 {
				t.Errorf("take-over %d: %+v, %v; want epoch 2", i, cs[i], err)
			}
		}
		if !errors.Is(errs[n+1], ErrNotFound) {
			t.Errorf("take-over of a missing channel: %v, want ErrNotFound", errs[n+1])
		}
		if a, b := cs[42].Epoch, cs[n+2].Epoch; errs[n+2] != nil || min(a, b) != 2 || max(a, b) != 3 {
			t.Errorf("the two take-overs of t042: epochs %d and %d (%v), want 2 and 3", a, b, errs[n+2])
		}
		if c, err := s.Channel(t.Context(), "t042"); err != nil || c.Epoch != 3 {
			t.Errorf("t042 after two take-overs: %+v, %v; want epoch 3", c, err)
		}
		if cfg.Node != "" && cs[0].Owner != cfg.Node {
			t.Errorf("t000 owned by %q after the take-over, want %q", cs[0].Owner, cfg.Node)
		}
		if got := g.sizes(); !slices.Equal(got, []int{1, n + 1, 1}) {
			t.Errorf("transactions of %v ids; want 3: the first, the %d, the second t042", got, n+1)
		}
	})
}

// TestOpenEpochOwnedInBatch: in cluster mode, a channel another node holds
// in a take-over batch gets its own *OwnedError, and is left as it was,
// while the others of the same transaction are taken over.
func TestOpenEpochOwnedInBatch(t *testing.T) {
	s, g := gatedStore(t, Config{URL: persisttest.DatabaseURL(t), Node: "a", Lease: time.Minute}, "")
	ids := []string{"c1", "c2", "c3", "c4"}
	seed(t, g, "", "first", "c1", "c3")
	seed(t, g, "b", "c2")
	seed(t, g, "a", "c4")
	cs := make([]Channel, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = s.OpenEpoch(t.Context(), "first") })
	waitStarted(t, g)
	for i, id := range ids {
		wg.Go(func() { cs[i], errs[i] = s.OpenEpoch(t.Context(), id) })
	}
	waitPending(t, s.takers, len(ids))
	close(g.release)
	wg.Wait()
	for i, id := range ids {
		if id == "c2" {
			owned, ok := errors.AsType[*OwnedError](errs[i])
			if !ok || !errors.Is(errs[i], ErrOwned) || owned.Owner != "b" || owned.Channel != "c2" {
				t.Errorf("c2: %v, want an *OwnedError naming b", errs[i])
			}
			if c, err := s.Channel(t.Context(), id); err != nil || c.Epoch != 1 || c.Owner != "b" {
				t.Errorf("c2 after the refused take-over: %+v, %v; want epoch 1, owned by b", c, err)
			}
			continue
		}
		if errs[i] != nil || cs[i].Epoch != 2 || cs[i].Owner != "a" {
			t.Errorf("%s: %+v, %v; want epoch 2, owned by a", id, cs[i], errs[i])
		}
	}
	if got := g.sizes(); !slices.Equal(got, []int{1, len(ids)}) {
		t.Errorf("transactions of %v ids, want the first, then one of %d", got, len(ids))
	}
}

// TestOpenEpochBatchFailure: when a take-over transaction fails, each of
// its take-overs is tried again alone; only the one the database refuses
// fails, and each of the others gets the next epoch once.
func TestOpenEpochBatchFailure(t *testing.T) {
	takeOverModes(t, func(t *testing.T, cfg Config) {
		s, g := gatedStore(t, cfg, "bad")
		ids := []string{"a", "b", "bad", "c", "d"}
		seed(t, g, cfg.Node, append([]string{"first"}, ids...)...)
		cs := make([]Channel, len(ids))
		errs := make([]error, len(ids))
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = s.OpenEpoch(t.Context(), "first") })
		waitStarted(t, g)
		for i, id := range ids {
			wg.Go(func() { cs[i], errs[i] = s.OpenEpoch(t.Context(), id) })
		}
		waitPending(t, s.takers, len(ids))
		close(g.release)
		wg.Wait()
		for i, id := range ids {
			c, cerr := s.Channel(t.Context(), id)
			if id == "bad" {
				if !errors.Is(errs[i], errRefused) || cerr != nil || c.Epoch != 1 {
					t.Errorf("bad: %v (channel %+v, %v), want the refusal and epoch 1", errs[i], c, cerr)
				}
				continue
			}
			if errs[i] != nil || cs[i].Epoch != 2 || cerr != nil || c.Epoch != 2 {
				t.Errorf("%s: %+v, %v (channel %+v, %v), want epoch 2", id, cs[i], errs[i], c, cerr)
			}
		}
		if got := g.sizes(); len(got) != 2+len(ids) {
			t.Errorf("transactions of %v ids, want the first, the batch, then one per id", got)
		}
	})
}
