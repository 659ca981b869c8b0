package hub

import (
	"context"
	"errors"
	"fmt"
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

// errStoreTimeout is the cause of a store call's context when the store
// timeout, not the caller, ended it.
var errStoreTimeout = errors.New("store timeout")

// timedStore bounds every call to a Store made for a request (all but
// DeleteClosedBefore, which retention runs in the background with its own
// context): a database that is down or hung
// costs a request at most timeout, then a StoreError (503). The call runs
// on the caller's goroutine with a context that ends at the timeout, which
// the drivers honour at once (pgx sets a deadline on the connection, even a
// blackholed one, and drops it; SQLite interrupts the statement):
// TestDatabaseFaultsUnderLoad sees the 503 of a hung database after the
// timeout and a few milliseconds.
type timedStore struct {
	Store
	timeout time.Duration
}

// bounded runs f with the store timeout.
func bounded[T any](s timedStore, ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	return Bounded(ctx, s.timeout, f)
}

// Bounded runs f, a store call, with a context that ends after timeout;
// past it the call fails with a *StoreError wrapping ErrStoreTimeout.
func Bounded[T any](ctx context.Context, timeout time.Duration, f func(context.Context) (T, error)) (T, error) {
	s := timedStore{timeout: timeout}
	ctx, cancel := context.WithTimeoutCause(ctx, s.timeout, errStoreTimeout)
	defer cancel()
	v, err := f(ctx)
	if err != nil && context.Cause(ctx) == errStoreTimeout {
		return v, s.timedOut(err)
	}
	return v, err
}

func (s timedStore) timedOut(err error) error {
	return &StoreError{Err: fmt.Errorf("%w: no answer within %v (%v)", ErrStoreTimeout, s.timeout, err)}
}

func (s timedStore) CreateChannel(ctx context.Context, id string, gen *persist.Generator) (persist.Channel, error) {
	return bounded(s, ctx, func(ctx context.Context) (persist.Channel, error) { return s.Store.CreateChannel(ctx, id, gen) })
}

func (s timedStore) Channel(ctx context.Context, id string) (persist.Channel, error) {
	return bounded(s, ctx, func(ctx context.Context) (persist.Channel, error) { return s.Store.Channel(ctx, id) })
}

func (s timedStore) Channels(ctx context.Context, after string, limit int) ([]persist.Channel, error) {
	return bounded(s, ctx, func(ctx context.Context) ([]persist.Channel, error) { return s.Store.Channels(ctx, after, limit) })
}

func (s timedStore) Messages(ctx context.Context, id string, after int64, limit int) ([]persist.Message, error) {
	return bounded(s, ctx, func(ctx context.Context) ([]persist.Message, error) { return s.Store.Messages(ctx, id, after, limit) })
}

func (s timedStore) OpenEpoch(ctx context.Context, id string) (persist.Channel, error) {
	return bounded(s, ctx, func(ctx context.Context) (persist.Channel, error) { return s.Store.OpenEpoch(ctx, id) })
}

func (s timedStore) Survived(ctx context.Context, id string, epoch int64) (int64, error) {
	return bounded(s, ctx, func(ctx context.Context) (int64, error) { return s.Store.Survived(ctx, id, epoch) })
}

// DeleteChannel is bounded through its context only: Hub.Delete must know
// whether the delete committed, so it waits for the driver to give up.
func (s timedStore) DeleteChannel(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeoutCause(ctx, s.timeout, errStoreTimeout)
	defer cancel()
	err := s.Store.DeleteChannel(ctx, id)
	if err != nil && context.Cause(ctx) == errStoreTimeout {
		return s.timedOut(err)
	}
	return err
}

func (s timedStore) Ping(ctx context.Context) error {
	_, err := bounded(s, ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.Store.Ping(ctx) })
	return err
}
