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

// creation is one CreateChannel or CreateStream call waiting for its
// transaction.
type creation struct {
	ctx  context.Context
	ch   newChannel
	done chan creationResult // capacity 1, one result
}

// creationResult is what a creation gets: the new record, or an error
// (ErrExists when the id was taken).
type creationResult struct {
	c   Channel
	err error
}

// Defaults of the creator: transactions in flight, channels per
// transaction. A creation transaction on PostgreSQL spends most of its
// time in the commit's WAL flush, which concurrent commits share: with
// eight in flight a creation waits less for a free one than with four,
// at the same cost per commit (bench scenario create, 64 clients).
const (
	createSlotsPostgres = 8
	createSlotsSQLite   = 1 // one writer connection: more would only queue
	createMaxBatch      = 500
)

// creator group-commits channel creations: a call queues its channel, and
// up to slots goroutines, started on demand and gone when nothing waits,
// each take every waiting channel (up to max) and insert them in one
// transaction of a few statements. A burst of creations thus costs a few
// transactions instead of one each. A transaction that fails as a whole is
// retried one channel at a time, so that a channel the database refuses
// fails alone. It is safe for concurrent use.
type creator struct {
	b     backend
	node  string
	lease time.Duration
	slots int
	max   int

	batch    metric.Observer // channels per transaction
	duration metric.Observer // duration of a creation transaction

	mu      sync.Mutex
	pending []*creation // Guarded by mu; in arrival order.
	running int         // Guarded by mu; drain goroutines alive.
}

// newCreator returns the creator of the store s, making its metrics with
// cfg.Metrics.
func newCreator(b backend, cfg Config, slots int) *creator {
	r := cmp.Or[metric.Registry](cfg.Metrics, metric.Discard)
	return &creator{
		b: b, node: cfg.Node, lease: cfg.Lease, slots: slots, max: createMaxBatch,
		batch: r.Histogram(opts("create_batch_channels",
			"Channels created per creation transaction."), metric.ExponentialBuckets(1, 2, 10)),
		duration: r.Histogram(opts("create_duration_seconds",
			"Duration of creation transactions."), metric.ExponentialBuckets(0.0005, 2, 15)),
	}
}

// create queues ch and waits for its transaction. If ctx ends before a
// transaction took ch, it is withdrawn and the error is ctx's; once taken,
// its outcome is awaited (the transaction is cancelled when every caller
// in it has given up).
func (cr *creator) create(ctx context.Context, ch newChannel) (Channel, error) {
	if err := ctx.Err(); err != nil {
		return Channel{}, err
	}
	cn := &creation{ctx: ctx, ch: ch, done: make(chan creationResult, 1)}
	cr.mu.Lock()
	cr.pending = append(cr.pending, cn)
	start := cr.running < cr.slots
	if start {
		cr.running++
	}
	cr.mu.Unlock()
	if start {
		go cr.drain()
	}
	select {
	case r := <-cn.done:
		return r.c, r.err
	case <-ctx.Done():
	}
	cr.mu.Lock()
	if i := slices.Index(cr.pending, cn); i >= 0 {
		cr.pending = slices.Delete(cr.pending, i, i+1)
		cr.mu.Unlock()
		return Channel{}, ctx.Err()
	}
	cr.mu.Unlock()
	r := <-cn.done
	return r.c, r.err
}

// drain writes batches of waiting creations until none waits.
func (cr *creator) drain() {
	for {
		cr.mu.Lock()
		batch := cr.take()
		if len(batch) == 0 {
			cr.running--
			cr.mu.Unlock()
			return
		}
		cr.mu.Unlock()
		cr.write(batch)
	}
}

// take removes up to max waiting creations from pending and returns them
// sorted by id, so that concurrent transactions insert in the same order
// and never deadlock. A second creation of an id already taken stays
// pending for the next transaction, where it finds the id taken (or free,
// if the first failed). The caller holds mu.
func (cr *creator) take() []*creation {
	var batch []*creation
	seen := make(map[string]bool)
	rest := cr.pending[:0]
	for _, cn := range cr.pending {
		if len(batch) < cr.max && !seen[cn.ch.id] {
			seen[cn.ch.id] = true
			batch = append(batch, cn)
			continue
		}
		rest = append(rest, cn)
	}
	clear(cr.pending[len(rest):])
	cr.pending = rest
	slices.SortFunc(batch, func(a, b *creation) int { return cmp.Compare(a.ch.id, b.ch.id) })
	return batch
}

// write creates the channels of batch in one transaction and answers each
// creation. If the transaction fails, a batch of more than one is written
// again one channel at a time, so that each gets its own outcome.
func (cr *creator) write(batch []*creation) {
	err := cr.insert(batch)
	if err == nil || len(batch) == 1 {
		if err != nil {
			batch[0].done <- creationResult{err: err}
		}
		return
	}
	for _, cn := range batch {
		if cn.ctx.Err() != nil {
			cn.done <- creationResult{err: err}
			continue
		}
		if err := cr.insert([]*creation{cn}); err != nil {
			cn.done <- creationResult{err: err}
		}
	}
}

// insert runs one transaction for batch, under a context that ends when
// every caller in it has given up, and answers the creations if it
// committed.
func (cr *creator) insert(batch []*creation) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiting := len(batch)
	var mu sync.Mutex
	for _, cn := range batch {
		stop := context.AfterFunc(cn.ctx, func() {
			mu.Lock()
			defer mu.Unlock()
			if waiting--; waiting == 0 {
				cancel()
			}
		})
		defer stop()
	}
	chs := make([]newChannel, len(batch))
	for i, cn := range batch {
		chs[i] = cn.ch
	}
	start := time.Now()
	cs, err := cr.b.createChannels(ctx, chs, cr.node, cr.lease)
	if err != nil {
		return err
	}
	cr.duration.Observe(time.Since(start).Seconds())
	cr.batch.Observe(float64(len(batch)))
	for i, cn := range batch {
		if cs[i].ID == "" {
			cn.done <- creationResult{err: ErrExists}
		} else {
			cn.done <- creationResult{c: cs[i]}
		}
	}
	return nil
}
