package persist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/messages-server/messages/internal/backoff"
	"github.com/messages-server/messages/internal/defaults"
	"github.com/messages-server/messages/internal/metric"
)

// BatchWriter commits batches of messages of many channels at once. Store
// implements it; so can any other backend.
type BatchWriter interface {
	// WriteBatches commits all the batches, at most one per channel, in one
	// transaction. It must be idempotent: after an error the same batches
	// are written again, unless the error is a *ChannelError (then the
	// batches of the other channels are) or wraps ErrRejected, ErrNotFound
	// or ErrChannelClosed (then each batch is written on its own, and the
	// one that fails alone is given up). A *RefusedError, for one batch,
	// means it was committed without the records it lists. It must be safe
	// for concurrent use.
	WriteBatches(ctx context.Context, batches []*Batch) error
}

// WriterConfig configures a Writer. The zero value of every field means its
// default.
type WriterConfig struct {
	// Workers is the number of concurrent transactions. Default 4.
	Workers int
	// QueueLen is the number of batches that can wait to be written; past
	// it TryEnqueue refuses. Default 4096.
	QueueLen int
	// MaxRows is the number of messages past which a worker stops adding
	// queued batches to its transaction. Default 10000.
	MaxRows int
	// MinBackoff and MaxBackoff bound the wait before retrying a failed
	// transaction: it starts at MinBackoff and doubles up to MaxBackoff,
	// each wait drawn at random between half and all of it. Defaults 50ms
	// and 5s.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one transaction attempt. Default 30s.
	Timeout time.Duration
	// Logger receives write failures and recoveries. Nil discards.
	Logger *slog.Logger
	// Metrics makes the writer's metrics. Nil records none. A metric made
	// twice (by a second Writer) is shared.
	Metrics metric.Registry
}

// withDefaults returns c with its zero fields set to their defaults.
func (c WriterConfig) withDefaults() WriterConfig {
	defaults.Positive(&c.Workers, 4)
	defaults.Positive(&c.QueueLen, 4096)
	defaults.Positive(&c.MaxRows, 10000)
	defaults.Positive(&c.MinBackoff, 50*time.Millisecond)
	defaults.Positive(&c.MaxBackoff, 5*time.Second)
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	defaults.Positive(&c.Timeout, 30*time.Second)
	if c.Metrics == nil {
		c.Metrics = metric.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Writer is a pool of workers that commit batches of messages handed to it
// with TryEnqueue. Each worker takes a queued batch, adds to it the other
// batches already queued, up to MaxRows messages, and commits them all in
// one WriteBatches call, retrying with backoff while that fails: a
// database outage delays batches, it never drops them. Batches of one
// channel are not ordered among themselves, so a caller keeps at most one
// batch per channel in the writer at a time.
//
// A batch that cannot be written however often it is retried (its channel
// does not exist, is closed or was taken over by another node, or the
// database refuses its data) is given up: its Done gets the error, it is
// logged and counted in messages_persist_failed_batches_total, and the
// batches it was grouped with are committed without it. A batch whose
// stream state alone is refused (a *RefusedError from WriteBatches) is
// committed without it: its Done gets that error, and it is counted in
// messages_persist_refused_records_batches_total.
//
// A Writer is safe for concurrent use. Create it with NewWriter; the zero
// value is not usable.
type Writer struct {
	dst     BatchWriter
	cfg     WriterConfig
	queue   chan *Batch
	done    chan struct{} // closed when every worker has returned
	stop    context.Context
	giveUp  context.CancelFunc // cancels stop: Close's ctx expired
	metrics writerMetrics

	failing atomic.Bool // set from a failed write to the next success

	mu     sync.RWMutex
	closed bool // Guarded by mu; once set, queue is closed.
}

// writerMetrics are the Writer's metrics.
type writerMetrics struct {
	rows     metric.Observer
	duration metric.Observer
	errors   metric.Counter
	failed   metric.CounterVec // by reason: not_found, closed, fenced, rejected
	refused  metric.Counter    // batches written without a record the store refused
	queued   metric.Gauge
}

// opts names a metric of the persist subsystem.
func opts(name, help string) metric.Opts {
	return metric.Opts{Namespace: "messages", Subsystem: "persist", Name: name, Help: help}
}

// newWriterMetrics makes the Writer's metrics with r.
func newWriterMetrics(r metric.Registry) writerMetrics {
	return writerMetrics{
		rows: r.Histogram(opts("batch_rows",
			"Messages written per persist transaction."), metric.ExponentialBuckets(1, 4, 9)),
		duration: r.Histogram(opts("duration_seconds",
			"Duration of successful persist transactions."), metric.ExponentialBuckets(0.0005, 2, 15)),
		errors: r.Counter(opts("errors_total",
			"Persist transactions that failed and were retried.")),
		failed: r.CounterVec(opts("failed_batches_total",
			"Batches given up because retrying cannot write them, by reason: "+
				"not_found (no such channel), closed (the channel is closed), fenced (another node took the channel over), "+
				"rejected (refused by the database)."), "reason", "not_found", "closed", "rejected"), // exported as 0 until one happens
		refused: r.Counter(opts("refused_records_batches_total",
			"Batches written without stream state (an idempotent producer's state, a Stream-Seq) "+
				"that the store refused for good; their messages were written.")),
		queued: r.Gauge(opts("queue_batches",
			"Batches waiting for a persist worker.")),
	}
}

// NewWriter starts a Writer that commits batches to dst.
func NewWriter(dst BatchWriter, cfg WriterConfig) *Writer {
	cfg = cfg.withDefaults()
	stop, giveUp := context.WithCancel(context.Background())
	w := &Writer{
		dst:     dst,
		cfg:     cfg,
		queue:   make(chan *Batch, cfg.QueueLen),
		done:    make(chan struct{}),
		stop:    stop,
		giveUp:  giveUp,
		metrics: newWriterMetrics(cfg.Metrics),
	}
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(w.work)
	}
	go func() {
		wg.Wait()
		giveUp()
		close(w.done)
	}()
	return w
}

// TryEnqueue hands b to the writer without blocking. It returns false, and
// leaves b to the caller, when the queue is full or the writer is closed.
// Once it returned true, b.Done is called exactly once.
func (w *Writer) TryEnqueue(b *Batch) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return false
	}
	w.metrics.queued.Inc() // before a worker can take it and decrement
	select {
	case w.queue <- b:
		return true
	default:
		w.metrics.queued.Dec()
		return false
	}
}

// Close stops accepting batches, commits every batch already queued and
// waits for the workers to finish. If ctx ends first (the store is down), it
// stops retrying, calls Done with an error wrapping ErrClosed for every
// batch not committed, and returns ctx's error once the workers are done.
// Calling Close again waits again.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		w.giveUp()
		<-w.done
		return fmt.Errorf("persist: close writer: %w", ctx.Err())
	}
}

// work is one worker: it commits groups of queued batches until the queue
// is closed and empty.
func (w *Writer) work() {
	group := make([]*Batch, 0, 64)
	for b := range w.queue {
		group = append(group[:0], b)
		rows := b.Rows()
	gather:
		for rows < w.cfg.MaxRows {
			select {
			case b, ok := <-w.queue:
				if !ok {
					break gather
				}
				group = append(group, b)
				rows += b.Rows()
			default:
				break gather
			}
		}
		w.metrics.queued.Sub(float64(len(group)))
		w.commit(group)
		clear(group) // let the batches go
	}
}

// commit writes group until it succeeds or the writer gives up, then calls
// every batch's Done. A batch that fails for a reason a retry cannot fix is
// given up alone.
func (w *Writer) commit(group []*Batch) {
	pace := backoff.Exponential{Min: w.cfg.MinBackoff, Max: w.cfg.MaxBackoff}
	for {
		err := w.stop.Err()
		if err == nil {
			err = w.write(group)
			if err == nil {
				done(group, nil)
				return
			}
			if _, ok := errors.AsType[*RefusedError](err); ok {
				// Committed without a record the store refused: the batch's
				// owner answers the request that record belonged to.
				w.metrics.refused.Inc()
				w.logRefused(group, err)
				done(group, err)
				return
			}
			if ce, ok := errors.AsType[*ChannelError](err); ok {
				if rest := w.failChannels(group, ce); len(rest) < len(group) {
					if group = rest; len(group) == 0 {
						return
					}
					continue // the others, at once
				}
			}
			if errors.Is(err, ErrRejected) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrChannelClosed) {
				if len(group) == 1 {
					w.fail(group[0], err)
					return
				}
				// Which batch is at fault is not known: each alone.
				for _, b := range group {
					w.commit([]*Batch{b})
				}
				return
			}
			w.metrics.errors.Inc()
			if w.failing.CompareAndSwap(false, true) {
				w.cfg.Logger.Error("persist: write failed, retrying until it succeeds",
					"batches", len(group), "err", err)
			}
		}
		if w.stop.Err() != nil {
			done(group, fmt.Errorf("persist: gave up writing: %w: %w", ErrClosed, err))
			return
		}
		d := pace.Next()
		backoff.Sleep(w.stop, d/2+rand.N(d/2+1)) // stopped: the loop gives up
	}
}

// write makes one attempt at committing group, observing the metrics of a
// success.
func (w *Writer) write(group []*Batch) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(w.stop, w.cfg.Timeout)
	defer cancel()
	err := w.dst.WriteBatches(ctx, group)
	if _, refused := errors.AsType[*RefusedError](err); err != nil && !refused {
		return err
	}
	var rows int
	for _, b := range group {
		rows += b.Rows()
	}
	w.metrics.rows.Observe(float64(rows))
	w.metrics.duration.Observe(time.Since(start).Seconds())
	if w.failing.CompareAndSwap(true, false) {
		w.cfg.Logger.Info("persist: writes recovered")
	}
	return err
}

// logRefused logs err, a *RefusedError of group, unless the batch has a Done
// that handles it.
func (w *Writer) logRefused(group []*Batch, err error) {
	for _, b := range group {
		if b.Done == nil {
			w.cfg.Logger.Error("persist: batch written without stream state the store refused",
				"channel", b.Channel, "seq", b.LastSeq(), "err", err)
		}
	}
}

// failChannels gives up the batches of group whose channel ce names and
// returns the others.
func (w *Writer) failChannels(group []*Batch, ce *ChannelError) []*Batch {
	rest := make([]*Batch, 0, len(group))
	for _, b := range group {
		if err, ok := ce.Channels[b.Channel]; ok {
			if errors.Is(err, errStored) {
				// Committed by an earlier attempt, before the channel moved.
				if b.Done != nil {
					b.Done(nil)
				}
				continue
			}
			w.fail(b, fmt.Errorf("persist: write batch of %q: %w", b.Channel, err))
			continue
		}
		rest = append(rest, b)
	}
	return rest
}

// fail gives up b, which retrying cannot write, with err.
func (w *Writer) fail(b *Batch, err error) {
	reason := "rejected"
	switch {
	case errors.Is(err, ErrNotFound):
		reason = "not_found"
	case errors.Is(err, ErrChannelClosed):
		reason = "closed"
	case errors.Is(err, ErrFenced):
		reason = "fenced"
	}
	w.metrics.failed.With(reason).Inc()
	// The error is logged once, where it is handled: by the batch's owner
	// when it has a Done (a channel deleted meanwhile is no error at all),
	// here otherwise.
	level := slog.LevelError
	if b.Done != nil {
		level = slog.LevelDebug
	}
	w.cfg.Logger.Log(context.Background(), level, "persist: batch given up, retrying cannot write it",
		"channel", b.Channel, "seq", b.LastSeq(), "reason", reason, "err", err)
	if b.Done != nil {
		b.Done(err)
	}
}

// done calls the Done of every batch of group that has one.
func done(group []*Batch, err error) {
	for _, b := range group {
		if b.Done != nil {
			b.Done(err)
		}
	}
}
