package persist

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/messages-server/messages/internal/metric"
)

// newChannel is a channel to create: its id, generator and stream
// configuration (Epoch at least 1).
type newChannel struct {
	id  string
	gen *Generator
	cfg StreamConfig
}

// request is one call waiting for its transaction: what it asks for (a
// channel to create, the id of a channel to take over) and where its
// outcome goes.
type request[T any] struct {
	ctx  context.Context
	item T
	done chan outcome // capacity 1, one outcome
}

// outcome is what a request gets: the channel's new record, or the error
// of that one entry (ErrExists for a taken id, ErrNotFound, an
// *OwnedError).
type outcome struct {
	c   Channel
	err error
}

// Defaults of a group: transactions in flight, entries per transaction. A
// creation transaction on PostgreSQL spends most of its time in the
// commit's WAL flush, which concurrent commits share: with eight in flight
// a creation waits less for a free one than with four, at the same cost per
// commit (bench scenario create, 64 clients).
const (
	groupSlotsPostgres = 8
	groupSlotsSQLite   = 1 // one writer connection: more would only queue
	groupMaxBatch      = 500
)

// group group-commits calls of one kind (creations, take-overs): a call
// queues its entry, and up to slots goroutines, started on demand and gone
// when nothing waits, each take every waiting entry (up to max) and write
// them in one transaction of a few statements. A burst of calls thus costs
// a few transactions instead of one each. A transaction that fails as a
// whole is retried one entry at a time, so that an entry the database
// refuses fails alone. It is safe for concurrent use.
type group[T any] struct {
	slots int
	max   int
	// key is the id of an entry: a transaction holds at most one entry
	// per id, and holds them in id order.
	key func(T) string
	// write runs one transaction for entries (distinct ids, in id order)
	// and returns the outcome of each, in order; or the error that failed
	// the transaction as a whole.
	write func(ctx context.Context, entries []T) ([]outcome, error)

	batch    metric.Observer // entries per transaction
	duration metric.Observer // duration of a transaction

	mu      sync.Mutex
	pending []*request[T] // Guarded by mu; in arrival order.
	running int           // Guarded by mu; drain goroutines alive.
}

// newGroup returns a group that writes with write, making its metrics
// <name>_batch_channels and <name>_duration_seconds, described as what
// (for example "creation"), with cfg.Metrics.
func newGroup[T any](cfg Config, slots int, name, what string, key func(T) string,
	write func(context.Context, []T) ([]outcome, error)) *group[T] {
	r := cmp.Or[metric.Registry](cfg.Metrics, metric.Discard)
	return &group[T]{
		slots: slots, max: groupMaxBatch, key: key, write: write,
		batch: r.Histogram(opts(name+"_batch_channels",
			"Channels per "+what+" transaction."), metric.ExponentialBuckets(1, 2, 10)),
		duration: r.Histogram(opts(name+"_duration_seconds",
			"Duration of "+what+" transactions."), metric.ExponentialBuckets(0.0005, 2, 15)),
	}
}

// do queues item and waits for its transaction. If ctx ends before a
// transaction took item, it is withdrawn and the error is ctx's; once
// taken, its outcome is awaited (the transaction is cancelled when every
// caller in it has given up).
func (g *group[T]) do(ctx context.Context, item T) (Channel, error) {
	if err := ctx.Err(); err != nil {
		return Channel{}, err
	}
	rq := &request[T]{ctx: ctx, item: item, done: make(chan outcome, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, rq)
	start := g.running < g.slots
	if start {
		g.running++
	}
	g.mu.Unlock()
	if start {
		go g.drain()
	}
	select {
	case r := <-rq.done:
		return r.c, r.err
	case <-ctx.Done():
	}
	g.mu.Lock()
	if i := slices.Index(g.pending, rq); i >= 0 {
		g.pending = slices.Delete(g.pending, i, i+1)
		g.mu.Unlock()
		return Channel{}, ctx.Err()
	}
	g.mu.Unlock()
	r := <-rq.done
	return r.c, r.err
}

// drain writes batches of waiting requests until none waits.
func (g *group[T]) drain() {
	for {
		g.mu.Lock()
		batch := g.take()
		if len(batch) == 0 {
			g.running--
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		g.writeBatch(batch)
	}
}

// take removes up to max waiting requests from pending and returns them
// sorted by key, so that concurrent transactions lock rows in the same
// order and never deadlock. A second request for a key already taken
// stays pending for the next transaction, which sees what the first did.
// The caller holds mu.
func (g *group[T]) take() []*request[T] {
	var batch []*request[T]
	seen := make(map[string]bool)
	rest := g.pending[:0]
	for _, rq := range g.pending {
		if k := g.key(rq.item); len(batch) < g.max && !seen[k] {
			seen[k] = true
			batch = append(batch, rq)
			continue
		}
		rest = append(rest, rq)
	}
	clear(g.pending[len(rest):])
	g.pending = rest
	slices.SortFunc(batch, func(a, b *request[T]) int { return cmp.Compare(g.key(a.item), g.key(b.item)) })
	return batch
}

// writeBatch writes batch in one transaction and answers each request. If
// the transaction fails, a batch of more than one is written again one
// entry at a time, so that each gets its own outcome.
func (g *group[T]) writeBatch(batch []*request[T]) {
	err := g.run(batch)
	if err == nil || len(batch) == 1 {
		if err != nil {
			batch[0].done <- outcome{err: err}
		}
		return
	}
	for _, rq := range batch {
		if rq.ctx.Err() != nil {
			rq.done <- outcome{err: err}
			continue
		}
		if err := g.run([]*request[T]{rq}); err != nil {
			rq.done <- outcome{err: err}
		}
	}
}

// run runs one transaction for batch, under a context that ends when
// every caller in it has given up, and answers the requests if it
// committed.
func (g *group[T]) run(batch []*request[T]) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiting := len(batch)
	var mu sync.Mutex
	for _, rq := range batch {
		stop := context.AfterFunc(rq.ctx, func() {
			mu.Lock()
			defer mu.Unlock()
			if waiting--; waiting == 0 {
				cancel()
			}
		})
		defer stop()
	}
	entries := make([]T, len(batch))
	for i, rq := range batch {
		entries[i] = rq.item
	}
	start := time.Now()
	out, err := g.write(ctx, entries)
	if err != nil {
		return err
	}
	g.duration.Observe(time.Since(start).Seconds())
	g.batch.Observe(float64(len(batch)))
	for i, rq := range batch {
		rq.done <- out[i]
	}
	return nil
}

// newCreator returns the group that writes the creations of s.
func newCreator(s *Store, cfg Config, slots int) *group[newChannel] {
	return newGroup(cfg, slots, "create", "creation", func(c newChannel) string { return c.id }, s.createBatch)
}

// createBatch creates the channels cs in one transaction; a taken id gets
// ErrExists.
func (s *Store) createBatch(ctx context.Context, cs []newChannel) ([]outcome, error) {
	created, err := s.b.createChannels(ctx, cs, s.node, s.lease)
	if err != nil {
		return nil, err
	}
	out := make([]outcome, len(cs))
	for i, c := range created {
		if c.ID == "" {
			out[i].err = ErrExists
		} else {
			out[i].c = c
		}
	}
	return out, nil
}

// newTakeOvers returns the group that writes the take-overs (OpenEpoch) of
// s.
func newTakeOvers(s *Store, cfg Config, slots int) *group[string] {
	return newGroup(cfg, slots, "takeover", "take-over", func(id string) string { return id }, s.takeOverBatch)
}

// takeOverBatch starts the next epoch of the channels ids in one
// transaction, in cluster mode only of those no other node holds.
func (s *Store) takeOverBatch(ctx context.Context, ids []string) ([]outcome, error) {
	return s.b.openEpochs(ctx, ids, s.node, s.lease)
}
