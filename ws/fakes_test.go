// The in-memory store and writer of the hub's tests (ws/hub/fakes_test.go), for
// the tests of the front over them.

package ws

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/hub"
)

// memStore is an in-memory hub.Store for testing the actor alone.
type memStore struct {
	mu       sync.Mutex
	channels map[string]persist.Channel
	msgs     map[string][]persist.Message
}

func newMemStore() *memStore {
	return &memStore{channels: map[string]persist.Channel{}, msgs: map[string][]persist.Message{}}
}

func (s *memStore) CreateChannel(_ context.Context, id string, gen *persist.Generator) (persist.Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.channels[id]; ok {
		return persist.Channel{}, persist.ErrExists
	}
	c := persist.Channel{ID: id, Epoch: 1, CreatedAt: time.Now(), Generator: gen}
	s.channels[id] = c
	return c, nil
}

func (s *memStore) Channel(_ context.Context, id string) (persist.Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.channels[id]
	if !ok {
		return c, persist.ErrNotFound
	}
	return c, nil
}

func (s *memStore) Channels(_ context.Context, after string, limit int) ([]persist.Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []persist.Channel
	for id, c := range s.channels {
		if id > after {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out[:min(limit, len(out))], nil
}

func (s *memStore) Messages(_ context.Context, id string, after int64, limit int) ([]persist.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := s.msgs[id]
	if after >= int64(len(all)) {
		return nil, nil
	}
	out := all[after:]
	return out[:min(limit, len(out))], nil
}

func (s *memStore) OpenEpoch(_ context.Context, id string) (persist.Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.channels[id]
	if !ok {
		return c, persist.ErrNotFound
	}
	c.Epoch++
	s.channels[id] = c
	return c, nil
}

func (s *memStore) Survived(_ context.Context, id string, epoch int64) (int64, error) {
	return s.channels[id].LastSeq, nil
}

func (s *memStore) Ping(context.Context) error { return nil }

func (s *memStore) DeleteChannel(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.channels[id]; !ok {
		return persist.ErrNotFound
	}
	delete(s.channels, id)
	delete(s.msgs, id)
	return nil
}

func (s *memStore) DeleteClosedBefore(_ context.Context, t time.Time, limit int) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, c := range s.channels {
		if len(ids) < limit && !c.Open() && c.ClosedAt.Before(t) {
			ids = append(ids, id)
			delete(s.channels, id)
			delete(s.msgs, id)
		}
	}
	return ids, nil
}

func (s *memStore) write(b *persist.Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.channels[b.Channel]
	b.Each(func(m persist.Message) bool {
		s.msgs[b.Channel] = append(s.msgs[b.Channel], m)
		return true
	})
	c.LastSeq = int64(len(s.msgs[b.Channel]))
	if b.Close {
		c.ClosedAt = time.Now()
	}
	s.channels[b.Channel] = c
}

// memWriter commits batches to a memStore at once, or refuses them while
// blocked.
type memWriter struct {
	store   *memStore
	mu      sync.Mutex
	blocked bool
}

func (w *memWriter) TryEnqueue(b *persist.Batch) bool {
	w.mu.Lock()
	blocked := w.blocked
	w.mu.Unlock()
	if blocked {
		return false
	}
	w.store.write(b)
	b.Done(nil)
	return true
}

func (w *memWriter) block(v bool) {
	w.mu.Lock()
	w.blocked = v
	w.mu.Unlock()
}

func newTestHub(t testing.TB, cfg hub.Config) (*hub.Hub, *memStore, *memWriter) {
	st := newMemStore()
	w := &memWriter{store: st}
	cfg.Store, cfg.Writer = st, w
	h := hub.New(cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w.block(false)
		// Stop waits for the actors even past ctx: bound the wait, so that
		// an actor that never exits fails the test instead of hanging it.
		stopped := make(chan error, 1)
		go func() { stopped <- h.Stop(ctx) }()
		timer := time.NewTimer(15 * time.Second)
		defer timer.Stop()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("stop: %v", err)
			}
		case <-timer.C:
			t.Errorf("the hub did not stop within 15s: an actor or generator does not exit")
		}
	})
	return h, st, w
}
