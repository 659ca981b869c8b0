package persist

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/persist/persisttest"
)

// gatedBackend records the creation and take-over transactions of its
// backend, holds the first one until released, and fails, as the
// database would, every transaction that holds the id bad.
type gatedBackend struct {
	backend
	bad     string
	release chan struct{} // closed to let the first transaction through

	mu    sync.Mutex
	calls [][]string // Guarded by mu; the ids of each transaction.
}

var errRefused = errors.New("refused by the test")

// enter records a transaction of ids, holds it if it is the first, and
// returns errRefused if it holds the bad id.
func (g *gatedBackend) enter(ids []string) error {
	g.mu.Lock()
	g.calls = append(g.calls, ids)
	first := len(g.calls) == 1
	g.mu.Unlock()
	if first {
		<-g.release
	}
	if slices.Contains(ids, g.bad) {
		return errRefused
	}
	return nil
}

func (g *gatedBackend) createChannels(ctx context.Context, cs []newChannel, node string, lease time.Duration) ([]Channel, error) {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.id
	}
	if err := g.enter(ids); err != nil {
		return nil, err
	}
	return g.backend.createChannels(ctx, cs, node, lease)
}

func (g *gatedBackend) openEpochs(ctx context.Context, ids []string, node string, lease time.Duration) ([]outcome, error) {
	if err := g.enter(ids); err != nil {
		return nil, err
	}
	return g.backend.openEpochs(ctx, ids, node, lease)
}

// gatedStore opens a store with cfg whose creations and take-overs go
// through a gatedBackend, with one transaction of each kind at a time.
func gatedStore(t *testing.T, cfg Config, bad string) (*Store, *gatedBackend) {
	s, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	g := &gatedBackend{backend: s.b, bad: bad, release: make(chan struct{})}
	s.b, s.creator.slots, s.takers.slots = g, 1, 1
	return s, g
}

// waitPending waits until n requests wait in gr.
func waitPending[T any](t *testing.T, gr *group[T], n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		gr.mu.Lock()
		got := len(gr.pending)
		gr.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests pending, want %d", got, n)
		}
		time.Sleep(time.Millisecond) // polling, not synchronising
	}
}

// waitStarted waits until the first transaction of g started.
func waitStarted(t *testing.T, g *gatedBackend) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		g.mu.Lock()
		n := len(g.calls)
		g.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the first transaction did not start")
		}
		time.Sleep(time.Millisecond) // polling, not synchronising
	}
}

// sizes returns the number of ids of each transaction of g.
func (g *gatedBackend) sizes() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n []int
	for _, c := range g.calls {
		n = append(n, len(c))
	}
	return n
}

// backends runs f against PostgreSQL and SQLite, in single-server mode.
func backends(t *testing.T, f func(t *testing.T, cfg Config)) {
	t.Run("postgres", func(t *testing.T) { f(t, Config{URL: persisttest.DatabaseURL(t)}) })
	t.Run("sqlite", func(t *testing.T) { f(t, Config{URL: persisttest.SQLiteURL(t)}) })
}

// TestCreateGroupCommit: creations that arrive while a creation
// transaction runs are written together in the next one, a duplicate
// among them gets ErrExists and the others succeed.
func TestCreateGroupCommit(t *testing.T) {
	backends(t, func(t *testing.T, cfg Config) {
		s, g := gatedStore(t, cfg, "")
		const n = 100
		errs := make([]error, n+2)
		var wg sync.WaitGroup
		create := func(i int, id string) {
			wg.Go(func() { _, errs[i] = s.CreateChannel(t.Context(), id, nil) })
		}
		create(n, "first")
		waitStarted(t, g) // the first is in its transaction
		for i := range n {
			create(i, fmt.Sprintf("c%03d", i))
		}
		create(n+1, "c042") // a duplicate in the same batch
		waitPending(t, s.creator, n+1)
		close(g.release)
		wg.Wait()
		for i, err := range errs[:n+1] {
			if err != nil && i != 42 {
				t.Errorf("creation %d: %v", i, err)
			}
		}
		// Whichever of the two c042 came first is created, the other
		// gets ErrExists.
		if a, b := errs[42], errs[n+1]; !(a == nil && errors.Is(b, ErrExists) || b == nil && errors.Is(a, ErrExists)) {
			t.Errorf("the two creations of c042: %v and %v, want one created and one ErrExists", a, b)
		}
		if got := g.sizes(); !slices.Equal(got, []int{1, n, 1}) {
			t.Errorf("transactions of %v ids; want 3: the first, the %d, the duplicate", got, n)
		}
	})
}

// TestCreateBatchFailure: when a creation transaction fails, each of its
// creations is tried again alone; only the one the database refuses
// fails.
func TestCreateBatchFailure(t *testing.T) {
	backends(t, func(t *testing.T, cfg Config) {
		s, g := gatedStore(t, cfg, "bad")
		ids := []string{"a", "b", "bad", "c", "d"}
		errs := make([]error, len(ids))
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = s.CreateChannel(t.Context(), "first", nil) })
		waitStarted(t, g)
		for i, id := range ids {
			wg.Go(func() { _, errs[i] = s.CreateChannel(t.Context(), id, nil) })
		}
		waitPending(t, s.creator, len(ids))
		close(g.release)
		wg.Wait()
		for i, id := range ids {
			_, cerr := s.Channel(t.Context(), id)
			if id == "bad" {
				if !errors.Is(errs[i], errRefused) || !errors.Is(cerr, ErrNotFound) {
					t.Errorf("bad: %v (channel: %v), want the refusal and no channel", errs[i], cerr)
				}
				continue
			}
			if errs[i] != nil || cerr != nil {
				t.Errorf("%s: %v (channel: %v), want created", id, errs[i], cerr)
			}
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if len(g.calls) != 2+len(ids) {
			t.Errorf("%d transactions (%v), want the first, the batch, then one per id", len(g.calls), g.calls)
		}
	})
}

// TestCreateWithdrawn: a creation whose context ends while it waits for a
// transaction is withdrawn: it fails with the context's error and its
// channel is not created.
func TestCreateWithdrawn(t *testing.T) {
	backends(t, func(t *testing.T, cfg Config) {
		s, g := gatedStore(t, cfg, "")
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = s.CreateChannel(t.Context(), "first", nil) })
		waitStarted(t, g)
		ctx, cancel := context.WithCancel(t.Context())
		var err error
		wg.Go(func() { _, err = s.CreateChannel(ctx, "gone", nil) })
		waitPending(t, s.creator, 1)
		cancel()
		waitPending(t, s.creator, 0)
		close(g.release)
		wg.Wait()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("withdrawn creation: %v, want context.Canceled", err)
		}
		if _, err := s.Channel(t.Context(), "gone"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Channel(gone): %v, want ErrNotFound", err)
		}
	})
}
