package ws

import (
	"context"
	"time"

	"github.com/messages-server/messages/persist"
)

// timedStreamStore bounds every call of a StreamStore by the store timeout,
// as the hub's store is bounded: a database that is down or hung costs a
// Durable Streams request at most the timeout, then a StoreError (503).
type timedStreamStore struct {
	StreamStore
	t timedStore // only its timeout is used
}

func (s timedStreamStore) CreateStream(ctx context.Context, id string, cfg persist.StreamConfig) (persist.Channel, error) {
	return bounded(s.t, ctx, func(ctx context.Context) (persist.Channel, error) { return s.StreamStore.CreateStream(ctx, id, cfg) })
}

func (s timedStreamStore) Stream(ctx context.Context, id string) (persist.StreamState, error) {
	return bounded(s.t, ctx, func(ctx context.Context) (persist.StreamState, error) { return s.StreamStore.Stream(ctx, id) })
}

func (s timedStreamStore) SaveStreamWrites(ctx context.Context, id, seq string, p *persist.ProducerState) error {
	_, err := bounded(s.t, ctx, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.StreamStore.SaveStreamWrites(ctx, id, seq, p)
	})
	return err
}

func (s timedStreamStore) DeleteChannel(ctx context.Context, id string) error {
	_, err := bounded(s.t, ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.StreamStore.DeleteChannel(ctx, id) })
	return err
}

func (s timedStreamStore) MarkDeleted(ctx context.Context, id string) error {
	_, err := bounded(s.t, ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.StreamStore.MarkDeleted(ctx, id) })
	return err
}

func (s timedStreamStore) Forks(ctx context.Context, id string) (int, error) {
	return bounded(s.t, ctx, func(ctx context.Context) (int, error) { return s.StreamStore.Forks(ctx, id) })
}

func (s timedStreamStore) TouchStream(ctx context.Context, id string) error {
	_, err := bounded(s.t, ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.StreamStore.TouchStream(ctx, id) })
	return err
}

func (s timedStreamStore) StreamIdle(ctx context.Context, id string) (time.Duration, error) {
	return bounded(s.t, ctx, func(ctx context.Context) (time.Duration, error) { return s.StreamStore.StreamIdle(ctx, id) })
}
