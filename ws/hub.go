// Package ws is the streaming core of messages: the hub and its channel
// actors, the catch-up-then-live subscription, the generator, the HTTP and
// WebSocket handlers, the wire frames, the metrics, and a small Go client for
// the protocol.
//
// Each open channel is owned by one goroutine, its actor. A subscriber asks
// the actor for a snapshot and is registered for live messages in the same
// step, then reads the persisted prefix from the store, the buffered copy,
// and its live queue: three disjoint ranges, so nothing is missed and
// nothing is repeated.
package ws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wire"
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
	cancel      context.CancelFunc // cancels generators and catch-up reads
	wg          sync.WaitGroup     // actors and generators

	bufferedMsgs  atomic.Int64
	bufferedBytes atomic.Int64

	mu       sync.Mutex
	channels map[string]*channel      // guarded by mu
	loading  map[string]chan struct{} // guarded by mu: loads in progress
	stopped  bool                     // guarded by mu
}

// NewHub returns a running hub. Call Start to resume the generators of
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

// Stop flushes every open channel to the store and ends every subscriber
// (their streams report ErrShuttingDown). It returns when all actors and
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

// reserve accounts for one more buffered message of n bytes in c, or
// reports false if a bound would be passed. Called by c's actor.
func (h *Hub) reserve(c *channel, n int64) bool {
	if c.lastSeq-c.p >= int64(h.cfg.MaxBufferedPerChannel) {
		return false
	}
	if h.bufferedBytes.Add(n) > h.cfg.MaxBufferedBytes {
		h.bufferedBytes.Add(-n)
		return false
	}
	h.bufferedMsgs.Add(1)
	return true
}

// release accounts for msgs buffered messages of n bytes leaving buffers.
func (h *Hub) release(msgs, n int64) {
	h.bufferedMsgs.Add(-msgs)
	h.bufferedBytes.Add(-n)
}

// storeErr maps store errors to the hub's.
func storeErr(err error) error {
	switch {
	case errors.Is(err, persist.ErrNotFound):
		return ErrNotFound
	case errors.Is(err, persist.ErrExists):
		return ErrExists
	}
	return &StoreError{Err: err}
}

// StoreError wraps a failure of the store (typically: database
// unreachable). The HTTP layer answers it with 503.
type StoreError struct{ Err error }

func (e *StoreError) Error() string { return "store unavailable: " + e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

// Create records a new channel and starts its actor, and its generator if
// gen is not nil. With startWhen > 0 the generator waits until that many
// subscribers are registered (so that a benchmark can connect everyone
// first); the wait is not stored, and a generator taken over after a
// restart starts at once.
func (h *Hub) Create(ctx context.Context, id string, gen *persist.Generator, startWhen int) (ChannelInfo, error) {
	h.mu.Lock()
	stopped := h.stopped
	h.mu.Unlock()
	if stopped {
		return ChannelInfo{}, ErrShuttingDown
	}
	// Hold the id's loading slot, so that no take-over of the new row by
	// get runs a second actor for it.
	for {
		h.mu.Lock()
		wait := h.loading[id]
		if wait == nil {
			if h.channels[id] != nil {
				h.mu.Unlock()
				return ChannelInfo{}, ErrExists
			}
			h.loading[id] = make(chan struct{})
			h.mu.Unlock()
			break
		}
		h.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ChannelInfo{}, ctx.Err()
		}
	}
	release := func() {
		h.mu.Lock()
		w := h.loading[id]
		delete(h.loading, id)
		h.mu.Unlock()
		close(w)
	}
	rec, err := h.store.CreateChannel(ctx, id, gen)
	if err != nil {
		release()
		return ChannelInfo{}, storeErr(err)
	}
	// A new channel needs no take-over: start its actor at epoch 1.
	c := newChannel(h, rec)
	if gen != nil && startWhen > 0 {
		c.startWhen = startWhen
		c.started = make(chan struct{})
	}
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		release()
		return ChannelInfo{}, ErrShuttingDown
	}
	h.channels[id] = c
	h.startActor(c)
	h.mu.Unlock()
	release()
	return h.infoOf(rec, c), nil
}

// Append adds a message to an open channel and returns its seq. With
// waitPersisted it returns only once the message is durable.
func (h *Hub) Append(ctx context.Context, id string, data []byte, waitPersisted bool) (int64, error) {
	req := &appendReq{data: data, wait: waitPersisted, result: make(chan appendResult, 1)}
	return h.appendReq(ctx, id, req)
}

func (h *Hub) appendReq(ctx context.Context, id string, req *appendReq) (int64, error) {
	for {
		c, err := h.get(ctx, id)
		if errors.Is(err, errClosedChannel) {
			return 0, ErrChannelClosed
		}
		if err != nil {
			return 0, err
		}
		req.time = time.Now().UnixMicro()
		sent, err := c.request(ctx, req)
		if err != nil {
			return 0, err
		}
		if !sent {
			continue // the actor exited: look again
		}
		r, ok := awaitResult(ctx, c, req.result)
		if !ok {
			continue
		}
		return r.seq, r.err
	}
}

// awaitResult waits for an actor's answer. It reports false if the actor
// exited without answering.
func awaitResult(ctx context.Context, c *channel, result chan appendResult) (appendResult, bool) {
	select {
	case r := <-result:
		return r, true
	case <-c.done:
		select {
		case r := <-result:
			return r, true
		default:
			return appendResult{}, false
		}
	case <-ctx.Done():
		return appendResult{err: ctx.Err()}, true
	}
}

// Close closes an open channel: its buffer is flushed, the close is made
// durable, and every subscriber gets the end. It returns the last seq.
func (h *Hub) Close(ctx context.Context, id string) (int64, error) {
	for {
		c, err := h.get(ctx, id)
		if errors.Is(err, errClosedChannel) {
			return 0, ErrChannelClosed
		}
		if err != nil {
			return 0, err
		}
		result := make(chan appendResult, 1)
		sent, err := c.request(ctx, closeReq{result: result})
		if err != nil {
			return 0, err
		}
		if !sent {
			continue
		}
		r, ok := awaitResult(ctx, c, result)
		if !ok {
			continue
		}
		return r.seq, r.err
	}
}

// ChannelInfo describes a channel, as the channels API shows it.
type ChannelInfo struct {
	ID           string             `json:"id"`
	Epoch        string             `json:"epoch"`
	Open         bool               `json:"open"`
	LastSeq      int64              `json:"last_seq"`
	PersistedSeq int64              `json:"persisted_seq"`
	Subscribers  int64              `json:"subscribers"`
	CreatedAt    time.Time          `json:"created_at"`
	ClosedAt     *time.Time         `json:"closed_at"`
	Generator    *persist.Generator `json:"generator"`
}

func (h *Hub) infoOf(rec persist.Channel, c *channel) ChannelInfo {
	info := ChannelInfo{
		ID: rec.ID, Epoch: fmt.Sprint(rec.Epoch), Open: rec.Open(), LastSeq: rec.LastSeq,
		PersistedSeq: rec.LastSeq, CreatedAt: rec.CreatedAt, Generator: rec.Generator,
	}
	if !rec.Open() {
		t := rec.ClosedAt
		info.ClosedAt = &t
	}
	if c != nil {
		info.Epoch = c.epochString()
		info.Open = true
		info.LastSeq = c.statLast.Load()
		info.PersistedSeq = c.statPersisted.Load()
		info.Subscribers = c.statSubs.Load()
	}
	return info
}

// running returns the actor of id if one runs in this process.
func (h *Hub) running(id string) *channel {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.channels[id]
}

// Info describes one channel.
func (h *Hub) Info(ctx context.Context, id string) (ChannelInfo, error) {
	rec, err := h.store.Channel(ctx, id)
	if err != nil {
		return ChannelInfo{}, storeErr(err)
	}
	return h.infoOf(rec, h.running(id)), nil
}

// List describes up to limit channels with id > after, ordered by id.
func (h *Hub) List(ctx context.Context, after string, limit int) ([]ChannelInfo, error) {
	recs, err := h.store.Channels(ctx, after, limit)
	if err != nil {
		return nil, storeErr(err)
	}
	out := make([]ChannelInfo, len(recs))
	for i, rec := range recs {
		out[i] = h.infoOf(rec, h.running(rec.ID))
	}
	return out, nil
}

// History returns up to limit messages with seq > from: the persisted ones
// from the store, the rest from the channel's buffer.
func (h *Hub) History(ctx context.Context, id string, from int64, limit int) ([]persist.Message, error) {
	snap, err := h.peek(ctx, id, from)
	if err != nil {
		return nil, err
	}
	if from > snap.lastSeq {
		return nil, &FromError{From: from, LastSeq: snap.lastSeq}
	}
	var out []persist.Message
	if from < snap.fromStore {
		rows, err := h.store.Messages(ctx, id, from, min(limit, int(snap.fromStore-from)))
		if err != nil {
			return nil, storeErr(err)
		}
		out = rows
	}
	for _, m := range snap.buffered {
		if len(out) >= limit || m.Seq != from+int64(len(out))+1 {
			break
		}
		out = append(out, persist.Message{Seq: m.Seq, Time: m.Time, Data: m.Data})
	}
	return out, nil
}

// FromError reports a subscription or history read that starts past the
// channel's last seq.
type FromError struct{ From, LastSeq int64 }

func (e *FromError) Error() string {
	return fmt.Sprintf("from=%d is past the channel's last seq %d", e.From, e.LastSeq)
}

// peek takes a snapshot without registering a subscriber.
func (h *Hub) peek(ctx context.Context, id string, from int64) (snapshot, error) {
	snap, _, err := h.subscribe(ctx, id, from, false)
	return snap, err
}

// subscribe takes a snapshot of channel id after from and, if register is
// set and the channel is open, registers a subscriber for what follows.
func (h *Hub) subscribe(ctx context.Context, id string, from int64, register bool) (snapshot, *registration, error) {
	for {
		c, err := h.get(ctx, id)
		if errors.Is(err, errClosedChannel) {
			rec, err := h.store.Channel(ctx, id)
			if err != nil {
				return snapshot{}, nil, storeErr(err)
			}
			if rec.Open() {
				continue // reopened: cannot happen, but do not serve it stale
			}
			return snapshot{epoch: rec.Epoch, persisted: rec.LastSeq, fromStore: rec.LastSeq, lastSeq: rec.LastSeq}, nil, nil
		}
		if err != nil {
			return snapshot{}, nil, err
		}
		req := &subscribeReq{from: from, result: make(chan snapshot, 1)}
		if register {
			req.sub = &subscriber{queue: make(chan *wire.Message, h.cfg.QueueLen)}
		}
		sent, err := c.request(ctx, req)
		if err != nil {
			return snapshot{}, nil, err
		}
		if !sent {
			continue
		}
		var snap snapshot
		select {
		case snap = <-req.result:
		case <-c.done:
			select {
			case snap = <-req.result:
			default:
				continue
			}
		case <-ctx.Done():
			// The actor may have registered req.sub: unregister it.
			if req.sub != nil {
				h.unsubscribe(c, req.sub)
			}
			return snapshot{}, nil, ctx.Err()
		}
		if snap.stopping {
			return snapshot{}, nil, ErrShuttingDown
		}
		if from > snap.lastSeq || !register {
			return snap, nil, nil // nothing was registered
		}
		return snap, &registration{c: c, s: req.sub}, nil
	}
}

// registration is a subscriber registered with a channel actor.
type registration struct {
	c *channel
	s *subscriber
}

func (h *Hub) unsubscribe(c *channel, s *subscriber) {
	select {
	case c.inbox <- unsubscribeReq{sub: s}:
	case <-c.done:
	}
}
