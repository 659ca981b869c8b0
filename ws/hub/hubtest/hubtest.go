// Package hubtest has in-memory doubles of the hub's store and persist
// writer, for the tests of the hub and of the front over it.
//
// Files: hubtest.go.
package hubtest

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/messages-server/messages/persist"
)

// MemStore is an in-memory hub.Store: channels and their messages in maps,
// without epochs of the past or leases. It is safe for concurrent use.
type MemStore struct {
	mu       sync.Mutex
	channels map[string]persist.Channel
	msgs     map[string][]persist.Message
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{channels: map[string]persist.Channel{}, msgs: map[string][]persist.Message{}}
}

// CreateChannel implements hub.Store.
func (s *MemStore) CreateChannel(_ context.Context, id string, gen *persist.Generator) (persist.Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.channels[id]; ok {
		return persist.Channel{}, persist.ErrExists
	}
	c := persist.Channel{ID: id, Epoch: 1, CreatedAt: time.Now(), Generator: gen}
	s.channels[id] = c
	return c, nil
}

// Channel implements hub.Store.
func (s *MemStore) Channel(_ context.Context, id string) (persist.Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.channels[id]
	if !ok {
		return c, persist.ErrNotFound
	}
	return c, nil
}

// Channels implements hub.Store.
func (s *MemStore) Channels(_ context.Context, after string, limit int) ([]persist.Channel, error) {
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

// Messages implements hub.Store.
func (s *MemStore) Messages(_ context.Context, id string, after int64, limit int) ([]persist.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := s.msgs[id]
	if after >= int64(len(all)) {
		return nil, nil
	}
	out := all[after:]
	return out[:min(limit, len(out))], nil
}

// OpenEpoch implements hub.Store.
func (s *MemStore) OpenEpoch(_ context.Context, id string) (persist.Channel, error) {
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

// Survived implements hub.Store.
func (s *MemStore) Survived(_ context.Context, id string, epoch int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.channels[id].LastSeq, nil
}

// Ping implements hub.Store.
func (s *MemStore) Ping(context.Context) error { return nil }

// DeleteChannel implements hub.Store.
func (s *MemStore) DeleteChannel(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.channels[id]; !ok {
		return persist.ErrNotFound
	}
	delete(s.channels, id)
	delete(s.msgs, id)
	return nil
}

// DeleteClosedBefore implements hub.Store.
func (s *MemStore) DeleteClosedBefore(_ context.Context, t time.Time, limit int) ([]string, error) {
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

// Write stores b's messages and its channel's new last seq and close
// mark at once.
func (s *MemStore) Write(b *persist.Batch) {
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

// Put stores channel c with msgs, replacing what the store held of it.
func (s *MemStore) Put(c persist.Channel, msgs []persist.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.channels[c.ID] = c
	s.msgs[c.ID] = msgs
}

// MemWriter commits batches to a MemStore at once, or refuses them while
// blocked.
type MemWriter struct {
	// Store receives the batches.
	Store   *MemStore
	mu      sync.Mutex
	blocked bool
}

// TryEnqueue implements hub.Enqueuer: it writes b and reports it done at
// once, unless blocked.
func (w *MemWriter) TryEnqueue(b *persist.Batch) bool {
	w.mu.Lock()
	blocked := w.blocked
	w.mu.Unlock()
	if blocked {
		return false
	}
	w.Store.Write(b)
	b.Done(nil)
	return true
}

// Block has the writer refuse every batch (its queue is full) while v.
func (w *MemWriter) Block(v bool) {
	w.mu.Lock()
	w.blocked = v
	w.mu.Unlock()
}
