package ws

import (
	"context"
	"time"

	"github.com/messages-server/messages/persist"
)

// Store is what the hub needs from storage: channel records and history
// reads. *persist.Store implements it; every method must be safe for
// concurrent use.
type Store interface {
	// CreateChannel records a new open channel, at epoch 1 or above the
	// epochs of every deleted channel. It returns persist.ErrExists if the
	// id is taken.
	CreateChannel(ctx context.Context, id string, gen *persist.Generator) (persist.Channel, error)
	// Channel returns the stored record, or persist.ErrNotFound.
	Channel(ctx context.Context, id string) (persist.Channel, error)
	// Channels returns up to limit channels with id > after, ordered by id.
	Channels(ctx context.Context, after string, limit int) ([]persist.Channel, error)
	// Messages returns up to limit messages with seq > after, in seq order.
	Messages(ctx context.Context, id string, after int64, limit int) ([]persist.Message, error)
	// OpenEpoch starts a new epoch of an open channel whose previous owner
	// is gone, and returns the updated record.
	OpenEpoch(ctx context.Context, id string) (persist.Channel, error)
	// Survived returns the highest seq that is the same in epoch and in the
	// current epoch: the last durable seq of the given epoch.
	Survived(ctx context.Context, id string, epoch int64) (int64, error)
	// DeleteChannel deletes a channel and its history, or returns
	// persist.ErrNotFound. A batch of it that commits afterwards fails
	// with persist.ErrNotFound.
	DeleteChannel(ctx context.Context, id string) error
	// DeleteClosedBefore deletes up to limit channels closed before t,
	// those closed first first, and returns their ids.
	DeleteClosedBefore(ctx context.Context, t time.Time, limit int) ([]string, error)
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
}

// Enqueuer takes batches of messages to commit. *persist.Writer implements
// it.
type Enqueuer interface {
	// TryEnqueue hands b to the writer without blocking. It returns false
	// when the writer's queue is full; the caller keeps the batch and tries
	// again later. b.Done is called once b is committed.
	TryEnqueue(b *persist.Batch) bool
}
