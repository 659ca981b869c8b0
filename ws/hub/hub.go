// Package hub is the server core of messages: the hub and its channel
// actors, the catch-up-then-live subscription, the history page cache,
// memory accounting and eviction, deletion and retention, the generator
// and its timer wheel, and the seams to storage (Store, Enqueuer) and to
// the other nodes of a cluster (Cluster). It knows nothing of HTTP or
// WebSocket: package ws is the front that serves it, ws/streams layers
// Durable Streams over it, and ws/cluster implements its Cluster.
//
// Each open channel is owned by one goroutine, its actor. A subscriber asks
// the actor for a snapshot and is registered for live messages in the same
// step, then reads the persisted prefix from the store, the buffered copy,
// and its live queue. The actor's three ranges are disjoint; the reader's
// history may overlap the buffered copy, because a cached history page
// can reach past the store's prefix (up to the persisted watermark), and
// the stream then skips what it already sent. Nothing is missed and
// nothing is sent twice.
//
// One file per concern:
//
//   - hub.go: the Hub, its registry of running actors, and call, which
//     asks an actor and asks again if it exited
//   - channel.go: the channel actor, and its role
//   - owner.go: the role of the actor of a channel this node owns
//   - persisted.go: the actor and the persist writer: a flush hands it a
//     batch, onPersisted takes the batch's outcome
//   - memory.go: what held messages cost, and the memory bounds
//   - evict.go: idle channels leaving memory
//   - produce.go: Create, Append and Close
//   - delete.go: Delete, and the retention of closed channels
//   - query.go: Info, List and History
//   - subscribe.go: one subscriber's stream (a Sink): register, catch up,
//     then live
//   - livequeue.go: a subscriber and its queue of live messages, which
//     for a parking stream holds room only while messages wait
//   - catchup.go: the history reads and the epoch check of a catch-up
//   - pagecache.go: the cache of encoded history pages catch-ups share
//   - generator.go: the reference server's line generator, run by the
//     channel's actor
//   - wheel.go: the hub's one timer, which wakes the actors whose
//     generator line or flush is due
//   - store.go: what the hub needs from storage, and the store timeout
//   - errors.go: the hub's errors
//   - id.go: valid channel ids
//   - metrics.go: the hub's metrics (made through internal/metric), and
//     its Usage
//   - adapter.go: what protocols over the hub (ws/streams) use: views of
//     a channel, appends that commit stream state, the store and cluster
//   - alone.go: the hub's peers, what it does about the other nodes,
//     where the two modes differ; alone (single-server mode) by default
//   - cluster.go: the Cluster seam, and the peers in cluster mode (package
//     ws/cluster implements Cluster)
//   - fence.go: an actor whose batch was fenced by another node
//   - follower.go: the role of a follower: the actor of a channel
//     another node owns
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/messages-server/messages/internal/defaults"
	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/ratelog"
)

// Config configures a Hub. The zero value of every field but Store and
// Writer means its default.
type Config struct {
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
	// MaxBufferedBytes bounds the memory of the messages all channels hold,
	// unpersisted and retained, each counted at its real cost (see
	// MessageOverhead), together with the history page cache; past it
	// appends fail with ErrOverloaded. The cache gives its pages up first,
	// then the channels their retained messages, which may use at most an
	// eighth of it. Default 256 MiB.
	MaxBufferedBytes int64
	// MaxChannelBytes bounds the same memory for one channel. Default
	// 16 MiB, and at most MaxBufferedBytes.
	MaxChannelBytes int64
	// HistoryPage is how many rows a catch-up reads from the store at once,
	// and the messages of a cached history page. Default 1000.
	HistoryPage int
	// HistoryCacheBytes bounds the bytes of the cache of encoded history
	// pages that catch-ups share (see pagecache.go), which also counts in
	// MaxBufferedBytes. Default 64 MiB; negative disables the cache.
	HistoryCacheBytes int64
	// RetainMessages and RetainBytes bound the persisted messages a channel
	// keeps in memory after they are durable, so that catch-ups and resumes
	// of recent history need no store read. Defaults 256 messages and
	// 64 KiB (at real cost) per channel.
	RetainMessages int
	RetainBytes    int64
	// Retention deletes channels closed longer ago than Retention.After,
	// in the background. The zero value keeps them forever.
	Retention RetentionConfig
	// MaxOpenChannels bounds the channels with an actor in this process;
	// past it creates and take-overs fail with ErrTooManyChannels.
	// Default 100,000.
	MaxOpenChannels int
	// MaxGeneratorRate bounds the sum of the frequencies (lines per
	// second) of the generators running in this process; past it a create
	// with a generator fails with ErrGeneratorRate. Generators taken over
	// after a restart are counted but never refused. Default 100,000.
	MaxGeneratorRate float64
	// IdleEvict is how long an open channel with no subscriber, no
	// generator and nothing unpersisted stays in memory without requests;
	// then its actor stops, and the next request takes it over again from
	// the store. Default 5 minutes.
	IdleEvict time.Duration
	// StoreTimeout bounds each store call made for a request (create,
	// info, list, history, take-over); past it the call fails with a
	// StoreError wrapping ErrStoreTimeout. Default 5s.
	StoreTimeout time.Duration
	// PersistWaitTimeout bounds how long an append that waits for
	// persistence waits; past it Append returns a *PersistWaitError.
	// Default 30s.
	PersistWaitTimeout time.Duration
	// Logger receives the hub's logs. Default: discard.
	Logger *slog.Logger
	// Metrics receives the hub's metrics. Default: not exported.
	Metrics *Metrics
	// Cluster links the hub to the other nodes in cluster mode (package
	// ws/cluster); the Store must then be in cluster mode too. Nil is
	// single-server mode.
	Cluster Cluster
}

func (c *Config) setDefaults() {
	defaults.Positive(&c.PersistInterval, 100*time.Millisecond)
	defaults.Positive(&c.QueueLen, 64)
	defaults.Positive(&c.MaxBufferedPerChannel, 100_000)
	defaults.Positive(&c.MaxBufferedBytes, 256<<20)
	defaults.Positive(&c.MaxChannelBytes, 16<<20)
	c.MaxChannelBytes = min(c.MaxChannelBytes, c.MaxBufferedBytes)
	defaults.Positive(&c.HistoryPage, 1000)
	if c.HistoryCacheBytes == 0 {
		c.HistoryCacheBytes = 64 << 20
	}
	defaults.Positive(&c.RetainMessages, 256)
	defaults.Positive(&c.RetainBytes, 64<<10)
	defaults.Positive(&c.MaxOpenChannels, 100_000)
	defaults.Positive(&c.MaxGeneratorRate, 100_000)
	defaults.Positive(&c.IdleEvict, 5*time.Minute)
	defaults.Positive(&c.StoreTimeout, 5*time.Second)
	defaults.Positive(&c.PersistWaitTimeout, 30*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	c.Retention.setDefaults()
}

// Hub is the registry of open channels and the entry point for producing and
// consuming messages. It is safe for concurrent use. Create it with New
// and stop it with Stop.
type Hub struct {
	cfg     Config
	store   Store
	writer  Enqueuer
	log     *slog.Logger
	metrics *Metrics
	cache   *pageCache // nil when disabled
	cluster Cluster    // nil when alone; used by the clustered peers and by followers
	peers   peers      // what the hub does about the other nodes (alone.go)
	wheel   *wheel     // wakes the actors whose generator line or flush is due
	// pausedLog reports generators paused by the memory bound: under a
	// flood they pause by thousands, and it keeps that to a line or two
	// per interval.
	pausedLog *ratelog.Logger

	stop        chan struct{} // closed by Stop: actors flush and exit
	abandon     chan struct{} // closed when Stop runs out of time
	abandonOnce sync.Once
	ctx         context.Context
	cancel      context.CancelFunc // cancels ctx, which only the generators use: Stop ends them
	wg          sync.WaitGroup     // actors and generators

	takenOver     atomic.Bool  // Start has finished
	bufferedMsgs  atomic.Int64 // unpersisted messages
	memBytes      atomic.Int64 // cost of every unpersisted and retained message
	retainedBytes atomic.Int64 // cost of the retained ones

	mu       sync.Mutex
	channels map[string]*channel      // guarded by mu
	loading  map[string]chan struct{} // guarded by mu: loads in progress
	stopped  bool                     // guarded by mu
	// actors are the running actors, which Stop signals; guarded by mu.
	actors  map[*channel]struct{}
	genRate float64          // guarded by mu: lines per second of the running generators
	evicted map[string]int64 // guarded by mu: epochs of channels evicted whole

	// writerFull is 1 + the wheel tick in which the writer's queue last
	// refused a batch (see channel.flush); 0 if it never did.
	writerFull atomic.Int64

	roomMu   sync.Mutex
	roomWait []roomWaiter // guarded by roomMu: generators paused by the memory bound, in pause order
	awaiting atomic.Bool  // roomWait is not empty: a releasing actor takes roomMu only then
}

// New returns a running hub, and starts its retention if
// cfg.Retention.After is set. Call Start to resume the generators of
// channels left open by a previous process.
func New(cfg Config) *Hub {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		cfg:      cfg,
		store:    timedStore{Store: cfg.Store, timeout: cfg.StoreTimeout},
		writer:   cfg.Writer,
		log:      cfg.Logger,
		metrics:  cfg.Metrics,
		cluster:  cfg.Cluster,
		stop:     make(chan struct{}),
		abandon:  make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		channels: make(map[string]*channel),
		loading:  make(map[string]chan struct{}),
		evicted:  make(map[string]int64),
		actors:   make(map[*channel]struct{}),
		wheel:    newWheel(wheelSlot),
		pausedLog: ratelog.New(cfg.Logger, slog.LevelWarn,
			"generator paused: memory bound reached, persistence is behind", 0),
	}
	h.metrics.persistLag.Store(&h.bufferedMsgs)
	h.metrics.memBytes.Store(&h.memBytes)
	h.peers = alone{}
	if cfg.Cluster != nil {
		h.peers = clustered{h: h, c: cfg.Cluster}
	}
	if cfg.HistoryCacheBytes > 0 {
		h.cache = newPageCache(cfg.HistoryCacheBytes, h.metrics.cache, &h.memBytes, cfg.MaxBufferedBytes)
	}
	if cfg.Retention.After > 0 {
		h.wg.Add(1)
		go h.retain()
	}
	return h
}

// Start takes over the open channels that have an unfinished generator, so
// their streams go on after a restart; until it returns nil, TakenOver
// reports false. Other open channels are taken over when they are first
// used, and so may these: requests need not wait for Start, which may run
// while the server already serves. Start may be called again after an
// error.
func (h *Hub) Start(ctx context.Context) error {
	after := ""
	for {
		page, err := h.store.Channels(ctx, after, 500)
		if err != nil {
			return fmt.Errorf("hub: list channels: %w", err)
		}
		if err := h.takeOver(ctx, page); err != nil {
			if errors.Is(err, ErrTooManyChannels) {
				h.log.Warn("open channels at their bound: the other generators resume when their channels are used",
					slog.Int("max_open_channels", h.cfg.MaxOpenChannels))
				break
			}
			return err
		}
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].ID
	}
	h.takenOver.Store(true)
	return nil
}

// startTakeOvers bounds the take-overs Start runs at a time: a whole page
// of its listing. The store writes concurrent take-overs together, many
// per transaction, so more at a time make fewer, larger transactions.
const startTakeOvers = 500

// takeOver starts the generators of page, startTakeOvers at a time: each
// take-over is a read, then a new epoch that the store writes together
// with the others'.
func (h *Hub) takeOver(ctx context.Context, page []persist.Channel) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, startTakeOvers)
	errs := make(chan error, len(page))
	for _, rec := range page {
		if !rec.Open() || rec.Generator == nil { // finished ones still need their close
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			// A channel that another node owns (cluster mode) is its.
			if _, err := h.get(ctx, rec.ID); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrMoved) {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // the first error, or nil
}

// TakenOver reports whether Start has taken over every generator left
// running by a previous process.
func (h *Hub) TakenOver() bool { return h.takenOver.Load() }

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
		for c := range h.actors {
			c.signal(sigStop)
		}
	}
	h.mu.Unlock()
	h.cancel()
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		h.wheel.stop() // the actors no longer need it
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		h.abandonOnce.Do(func() {
			h.mu.Lock()
			close(h.abandon)
			for c := range h.actors {
				c.signal(sigAbandon)
			}
			h.mu.Unlock()
		})
		<-done
		return fmt.Errorf("hub: stop hub: %w", ctx.Err())
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
		if h.full() {
			h.mu.Unlock()
			return nil, ErrTooManyChannels
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
		return nil, StoreErr(err)
	}
	if !rec.Open() {
		return nil, errClosedChannel
	}
	if err := h.peers.canOwn(); err != nil {
		return nil, err
	}
	if h.reclaim(id, rec.Epoch) {
		return newChannel(h, rec), nil
	}
	rec, err = h.store.OpenEpoch(ctx, id)
	if err != nil {
		return nil, StoreErr(err)
	}
	h.log.Debug("channel taken over", slog.String("channel", id), slog.Int64("epoch", rec.Epoch),
		slog.Int64("seq", rec.LastSeq))
	h.peers.tookOver(id, rec.Epoch)
	return newChannel(h, rec), nil
}

// startActor starts c's actor, which runs c's generator if it has one.
// Called with h.mu held.
func (h *Hub) startActor(c *channel) {
	h.metrics.channelsOpen.Inc()
	if c.gen != nil && !c.genCounted {
		h.genRate += c.gen.Freq
	}
	h.actors[c] = struct{}{}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if c.gen != nil {
			defer h.genDone(c.gen.Freq)
		}
		c.run(h.stop, h.abandon)
	}()
}

// full reports whether no more actors may start. Called with h.mu held.
func (h *Hub) full() bool {
	return len(h.channels)+len(h.loading) >= h.cfg.MaxOpenChannels
}

// genDone accounts for a generator that stopped.
func (h *Hub) genDone(freq float64) {
	h.mu.Lock()
	h.genRate -= freq
	h.mu.Unlock()
}

// remove forgets an actor that is exiting.
func (h *Hub) remove(c *channel, closed bool) {
	h.mu.Lock()
	if h.channels[c.id] == c {
		delete(h.channels, c.id)
	}
	delete(h.actors, c)
	if c.evicted && len(h.evicted) < h.cfg.MaxOpenChannels {
		h.evicted[c.id] = c.epoch
	}
	h.mu.Unlock()
	h.metrics.channelsOpen.Dec()
	h.forget(c)
	if closed {
		h.log.Debug("channel closed", slog.String("channel", c.id), slog.Int64("seq", c.lastSeq))
	}
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
