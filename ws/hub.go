// Package ws is the streaming core of messages: the hub and its channel
// actors, the catch-up-then-live subscription, the generator, and the HTTP
// and WebSocket handlers of the server. The wire format is package ws/wire
// and the Go client package ws/client.
//
// Each open channel is owned by one goroutine, its actor. A subscriber asks
// the actor for a snapshot and is registered for live messages in the same
// step, then reads the persisted prefix from the store, the buffered copy,
// and its live queue: three disjoint ranges, so nothing is missed and
// nothing is repeated.
//
// One file per concern:
//
//   - hub.go: the Hub, its registry of running actors, and call, which
//     asks an actor and asks again if it exited
//   - channel.go: the channel actor
//   - produce.go: Create, Append and Close
//   - delete.go: Delete, and the retention of closed channels
//   - query.go: Info, List and History
//   - subscribe.go: one subscriber's stream: register, catch up, then live
//   - catchup.go: the history reads and the epoch check of a catch-up
//   - generator.go: the reference server's line generator
//   - store.go: what the hub needs from storage
//   - server.go: the Server, its routes, shutdown, health and readiness
//   - channels.go: the /channels API
//   - reference.go: the reference API (GET and POST /)
//   - websocket.go: the WebSocket transport (GET /ws)
//   - validate.go: channel ids and request parameters
//   - errors.go: error types and their HTTP statuses
//   - metrics.go: the Prometheus collectors
//   - durable_backend.go: DurableBackend, which makes every channel a
//     Durable Streams stream (package ws/durable serves the protocol):
//     appends, reads, long-poll waits
//   - durable_lifecycle.go: creating, forking and deleting streams
package ws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// HubConfig configures a Hub. The zero value of every field but Store and
// Writer means its default.
type HubConfig struct {
	// Store keeps channel records and serves history. Required.
	Store Store
	// Writer commits batches of messages. Required.
	Writer Enqueuer
	// PersistInterval is the longest a message waits in a channel's buffer
	// before it is handed to the writer. Default 100ms.
	PersistInterval time.Duration
	// QueueLen is the length of each subscriber's live queue; a subscriber
	// that falls further behind is detached and catches up from history.
	// Default 64.
	QueueLen int
	// MaxBufferedPerChannel bounds the unpersisted messages of one channel;
	// past it appends fail with ErrOverloaded. Default 100,000.
	MaxBufferedPerChannel int
	// MaxBufferedBytes bounds the unpersisted message bytes of all channels
	// together; past it appends fail with ErrOverloaded. Default 256 MiB.
	MaxBufferedBytes int64
	// HistoryPage is how many rows a catch-up reads from the store at once.
	// Default 1000.
	HistoryPage int
	// RetainMessages and RetainBytes bound the persisted messages a channel
	// keeps in memory after they are durable, so that catch-ups and resumes
	// of recent history need no store read. Defaults 256 messages and
	// 64 KiB of data per channel.
	RetainMessages int
	RetainBytes    int64
	// Retention deletes channels closed longer ago than Retention.After,
	// in the background. The zero value keeps them forever.
	Retention RetentionConfig
	// Logger receives the hub's logs. Default: discard.
	Logger *slog.Logger
	// Metrics receives the hub's metrics. Default: not exported.
	Metrics *Metrics
}

func (c *HubConfig) setDefaults() {
	if c.PersistInterval <= 0 {
		c.PersistInterval = 100 * time.Millisecond
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 64
	}
	if c.MaxBufferedPerChannel <= 0 {
		c.MaxBufferedPerChannel = 100_000
	}
	if c.MaxBufferedBytes <= 0 {
		c.MaxBufferedBytes = 256 << 20
	}
	if c.HistoryPage <= 0 {
		c.HistoryPage = 1000
	}
	if c.RetainMessages <= 0 {
		c.RetainMessages = 256
	}
	if c.RetainBytes <= 0 {
		c.RetainBytes = 64 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	c.Retention.setDefaults()
}

// Hub is the registry of open channels and the entry point for producing and
// consuming messages. It is safe for concurrent use. Create it with NewHub
// and stop it with Stop.
type Hub struct {
	cfg     HubConfig
	store   Store
	writer  Enqueuer
	log     *slog.Logger
	metrics *Metrics

	stop        chan struct{} // closed by Stop: actors flush and exit
	abandon     chan struct{} // closed when Stop runs out of time
	abandonOnce sync.Once
	ctx         context.Context
	cancel      context.CancelFunc // cancels ctx, which only the generators use: Stop ends them
	wg          sync.WaitGroup     // actors and generators

	bufferedMsgs  atomic.Int64
	bufferedBytes atomic.Int64

	mu       sync.Mutex
	channels map[string]*channel      // guarded by mu
	loading  map[string]chan struct{} // guarded by mu: loads in progress
	stopped  bool                     // guarded by mu
}

// NewHub returns a running hub, and starts its retention if
// cfg.Retention.After is set. Call Start to resume the generators of
// channels left open by a previous process.
func NewHub(cfg HubConfig) *Hub {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		cfg:      cfg,
		store:    cfg.Store,
		writer:   cfg.Writer,
		log:      cfg.Logger,
		metrics:  cfg.Metrics,
		stop:     make(chan struct{}),
		abandon:  make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		channels: make(map[string]*channel),
		loading:  make(map[string]chan struct{}),
	}
	h.metrics.persistLag.Store(&h.bufferedMsgs)
	if cfg.Retention.After > 0 {
		h.wg.Add(1)
		go h.retain()
	}
	return h
}

// Start takes over the open channels that have an unfinished generator, so
// their streams go on after a restart. Other open channels are taken over
// when they are first used.
func (h *Hub) Start(ctx context.Context) error {
	after := ""
	for {
		page, err := h.store.Channels(ctx, after, 500)
		if err != nil {
			return fmt.Errorf("ws: list channels: %w", err)
		}
		for _, rec := range page {
			if rec.Open() && rec.Generator != nil { // finished ones still need their close
				if _, err := h.get(ctx, rec.ID); err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
			}
		}
		if len(page) < 500 {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

// Stop stops the generators, flushes every open channel to the store and
// ends every registered subscriber (their streams report ErrShuttingDown).
// It cancels no catch-up read: a stream still reading history goes on
// until its own context ends (Server.Shutdown cancels those) or it reaches
// its live queue, which the actor has closed. It returns when all actors and
// generators have exited, or when ctx is done; then what could not be
// persisted is logged as lost.
func (h *Hub) Stop(ctx context.Context) error {
	h.mu.Lock()
	if !h.stopped {
		h.stopped = true
		close(h.stop)
	}
	h.mu.Unlock()
	h.cancel()
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		h.abandonOnce.Do(func() { close(h.abandon) })
		<-done
		return fmt.Errorf("ws: stop hub: %w", ctx.Err())
	}
}

// get returns the actor of an open channel, taking the channel over from the
// store if no actor runs it yet. It returns ErrNotFound for an unknown id and
// errClosedChannel (with no actor) for a closed one.
func (h *Hub) get(ctx context.Context, id string) (*channel, error) {
	for {
		h.mu.Lock()
		if h.stopped {
			h.mu.Unlock()
			return nil, ErrShuttingDown
		}
		if c := h.channels[id]; c != nil {
			h.mu.Unlock()
			return c, nil
		}
		if wait := h.loading[id]; wait != nil {
			h.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		wait := make(chan struct{})
		h.loading[id] = wait
		h.mu.Unlock()

		c, err := h.load(ctx, id)
		h.mu.Lock()
		delete(h.loading, id)
		if c != nil {
			switch existing := h.channels[id]; {
			case h.stopped:
				c, err = nil, ErrShuttingDown
			case existing != nil:
				c = existing // installed meanwhile by Create
			default:
				h.channels[id] = c
				h.startActor(c)
			}
		}
		h.mu.Unlock()
		close(wait)
		return c, err
	}
}

// errClosedChannel is returned by load for a channel that is closed: it has
// no actor and is served from the store.
var errClosedChannel = errors.New("channel is closed")

func (h *Hub) load(ctx context.Context, id string) (*channel, error) {
	rec, err := h.store.Channel(ctx, id)
	if err != nil {
		return nil, storeErr(err)
	}
	if !rec.Open() {
		return nil, errClosedChannel
	}
	rec, err = h.store.OpenEpoch(ctx, id)
	if err != nil {
		return nil, storeErr(err)
	}
	h.log.Info("channel taken over", slog.String("channel", id), slog.Int64("epoch", rec.Epoch),
		slog.Int64("seq", rec.LastSeq))
	return newChannel(h, rec), nil
}

// startActor starts c's actor and its generator. Called with h.mu held.
func (h *Hub) startActor(c *channel) {
	h.metrics.channelsOpen.Inc()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		c.run(h.stop, h.abandon)
	}()
	if c.gen != nil {
		// A generator past its last line only closes the channel: a
		// shutdown or crash may have come between the two.
		next := c.lastSeq + 1 // read before the actor takes appends
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.generate(c, next)
		}()
	}
}

// remove forgets an actor that is exiting.
func (h *Hub) remove(c *channel, closed bool) {
	h.mu.Lock()
	if h.channels[c.id] == c {
		delete(h.channels, c.id)
	}
	h.mu.Unlock()
	h.metrics.channelsOpen.Dec()
	h.release(c.lastSeq-c.p, c.bufBytes)
	if closed {
		h.log.Debug("channel closed", slog.String("channel", c.id), slog.Int64("seq", c.lastSeq))
	}
}

// reserve accounts for msgs more buffered messages of n bytes in all in c,
// or reports false if a bound would be passed. Called by c's actor.
func (h *Hub) reserve(c *channel, msgs, n int64) bool {
	if c.lastSeq-c.p+msgs > int64(h.cfg.MaxBufferedPerChannel) {
		return false
	}
	if h.bufferedBytes.Add(n) > h.cfg.MaxBufferedBytes {
		h.bufferedBytes.Add(-n)
		return false
	}
	h.bufferedMsgs.Add(msgs)
	return true
}

// release accounts for msgs buffered messages of n bytes leaving buffers.
func (h *Hub) release(msgs, n int64) {
	h.bufferedMsgs.Add(-msgs)
	h.bufferedBytes.Add(-n)
}

// call sends the request made by req to the actor of channel id and
// returns the answer the actor puts on result, and the actor. If the actor
// exits before it takes or answers the request, call asks again: get starts
// the channel's next actor. req is called before each send.
//
// call returns get's errors (errClosedChannel for a closed channel, which
// has no actor), or ctx.Err(). With ctx.Err() and a non-nil channel, the
// request was sent and the actor may have acted on it.
func call[T any](ctx context.Context, h *Hub, id string, req func() any, result chan T) (T, *channel, error) {
	var zero T
	for {
		c, err := h.get(ctx, id)
		if err != nil {
			return zero, nil, err
		}
		sent, err := c.request(ctx, req())
		if err != nil {
			return zero, nil, err
		}
		if !sent {
			continue // the actor exited: look again
		}
		r, ok, err := await(ctx, c, result)
		if err != nil {
			return zero, c, err
		}
		if ok {
			return r, c, nil
		}
	}
}

// await waits for c's answer on result. It reports false if c exited
// without answering, and returns ctx.Err() if ctx is done first.
func await[T any](ctx context.Context, c *channel, result <-chan T) (T, bool, error) {
	var zero T
	select {
	case r := <-result:
		return r, true, nil
	case <-c.done:
		select {
		case r := <-result:
			return r, true, nil
		default:
			return zero, false, nil
		}
	case <-ctx.Done():
		return zero, false, ctx.Err()
	}
}
