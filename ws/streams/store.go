package streams

import (
	"context"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/hub"
)

// timedStreamStore bounds every call of a Store by the store timeout,
// as the hub's store is bounded: a database that is down or hung costs a
// Durable Streams request at most the timeout, then a StoreError (503).
type timedStreamStore struct {
	Store
	timeout time.Duration
}

func (s timedStreamStore) CreateStream(ctx context.Context, id string, cfg persist.StreamConfig) (persist.Channel, error) {
	return hub.Bounded(ctx, s.timeout, func(ctx context.Context) (persist.Channel, error) { return s.Store.CreateStream(ctx, id, cfg) })
}

func (s timedStreamStore) Stream(ctx context.Context, id string) (persist.StreamState, error) {
	return hub.Bounded(ctx, s.timeout, func(ctx context.Context) (persist.StreamState, error) { return s.Store.Stream(ctx, id) })
}

func (s timedStreamStore) SaveStreamWrites(ctx context.Context, id, seq string, p *persist.ProducerState) error {
	_, err := hub.Bounded(ctx, s.timeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.Store.SaveStreamWrites(ctx, id, seq, p)
	})
	return err
}

func (s timedStreamStore) DeleteChannel(ctx context.Context, id string) error {
	_, err := hub.Bounded(ctx, s.timeout, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.Store.DeleteChannel(ctx, id) })
	return err
}

func (s timedStreamStore) MarkDeleted(ctx context.Context, id string) error {
	_, err := hub.Bounded(ctx, s.timeout, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.Store.MarkDeleted(ctx, id) })
	return err
}

func (s timedStreamStore) Forks(ctx context.Context, id string) (int, error) {
	return hub.Bounded(ctx, s.timeout, func(ctx context.Context) (int, error) { return s.Store.Forks(ctx, id) })
}

func (s timedStreamStore) TouchStream(ctx context.Context, id string) error {
	_, err := hub.Bounded(ctx, s.timeout, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.Store.TouchStream(ctx, id) })
	return err
}

func (s timedStreamStore) StreamIdle(ctx context.Context, id string) (time.Duration, error) {
	return hub.Bounded(ctx, s.timeout, func(ctx context.Context) (time.Duration, error) { return s.Store.StreamIdle(ctx, id) })
}
