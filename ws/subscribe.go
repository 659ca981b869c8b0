package ws

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wire"
)

// sink receives one subscriber's stream. Calls come from one goroutine, in
// order: hello once, then runs of contiguous messages, live once (unless the
// channel was already closed), and end if the channel ends.
type sink interface {
	hello(h helloInfo) error
	// messages delivers a contiguous run; live tells whether they were
	// appended after the subscriber caught up.
	messages(msgs []*wire.Message, live bool) error
	// page delivers a history page: contiguous messages, already encoded
	// and shared with other readers.
	page(p *page) error
	live(seq int64) error
	end(seq int64) error
}

// helloInfo is what a subscriber learns first.
type helloInfo struct {
	channel   string
	epoch     int64
	from      int64
	lastSeq   int64
	persisted int64
	open      bool
	// contentType is the channel's; "" for text.
	contentType string
}

// maxRun bounds how many queued live messages go into one write, and
// maxRunBytes how much data.
const (
	maxRun      = 512
	maxRunBytes = 256 << 10
)

// stream delivers channel id after from to s: the persisted history, the
// buffered messages, then live messages until the channel ends, ctx is done
// or the server stops. A subscriber that falls behind is detached by the
// actor and caught up again here, from the last message it was given;
// if the channel was taken over meanwhile (another epoch, in cluster mode),
// that would be another history, and the stream ends with ErrMoved so that
// the client resumes with its epoch.
func (h *Hub) stream(ctx context.Context, id string, from int64, epoch string, s sink) error {
	started := time.Now()
	if epoch != "" {
		if err := h.checkEpoch(ctx, id, from, epoch); err != nil {
			return err
		}
	}
	last := from
	first := true
	sentLive := false
	var helloEpoch int64 // catching up again in another epoch: ErrMoved
	var run []*wire.Message
	for {
		snap, reg, err := h.subscribe(ctx, id, last, true)
		if err != nil {
			return err
		}
		if !first && snap.epoch != helloEpoch {
			h.unregister(reg)
			return ErrMoved
		}
		helloEpoch = snap.epoch
		if last > snap.lastSeq {
			return &FromError{From: last, LastSeq: snap.lastSeq}
		}
		if first {
			first = false
			err := s.hello(helloInfo{channel: id, epoch: snap.epoch, from: from, lastSeq: snap.lastSeq,
				persisted: snap.persisted, open: snap.open, contentType: snap.contentType})
			if err != nil {
				h.unregister(reg)
				return err
			}
		}
		if err := h.history(ctx, id, snap.epoch, &last, snap.fromStore, snap.persisted, !snap.open, persist.BinaryType(snap.contentType), s); err != nil {
			h.unregister(reg)
			return err
		}
		// A cached page may have covered the start of the buffered copy.
		buffered := snap.buffered
		for len(buffered) > 0 && buffered[0].Seq <= last {
			buffered = buffered[1:]
		}
		if err := sendRuns(s, buffered); err != nil {
			h.unregister(reg)
			return err
		}
		if n := len(buffered); n > 0 {
			last = buffered[n-1].Seq
		}
		if reg == nil {
			// Closed channel: everything came from the store.
			if !sentLive {
				h.metrics.catchup.Observe(time.Since(started).Seconds())
			}
			return s.end(last)
		}
		if !sentLive {
			sentLive = true
			h.metrics.catchup.Observe(time.Since(started).Seconds())
			if err := s.live(last); err != nil {
				h.unregister(reg)
				return err
			}
		}
		var reason int
		reason, last, run, err = h.drain(ctx, reg, last, run, s)
		if err != nil {
			h.unregister(reg)
			return err
		}
		switch reason {
		case reasonEnded:
			return s.end(reg.s.endSeq)
		case reasonShutdown:
			return ErrShuttingDown
		case reasonFailed:
			return ErrChannelFailed
		case reasonDeleted:
			return ErrChannelDeleted
		case reasonMoved:
			return ErrMoved
		}
		// Detached: catch up again from last.
	}
}

// drain sends live messages from reg's queue until the actor closes it, and
// returns why it did and the last seq sent.
func (h *Hub) drain(ctx context.Context, reg *registration, last int64, run []*wire.Message, s sink) (int, int64, []*wire.Message, error) {
	q := reg.s.queue
	var idle <-chan time.Time
	p, _ := s.(pinger)
	if p != nil {
		t := time.NewTicker(p.heartbeat())
		defer t.Stop()
		idle = t.C
	}
	for {
		var m *wire.Message
		var ok bool
		select {
		case m, ok = <-q:
		case <-idle:
			if err := p.keepalive(); err != nil {
				return 0, last, run, err
			}
			continue
		case <-ctx.Done():
			return 0, last, run, ctx.Err()
		}
		if !ok {
			return reg.s.reason, last, run, nil
		}
		run = append(run[:0], m)
		size := len(m.Data)
		closed := false
	gather:
		for len(run) < maxRun && size < maxRunBytes {
			select {
			case m, ok = <-q:
				if !ok {
					closed = true
					break gather
				}
				run = append(run, m)
				size += len(m.Data)
			default:
				break gather
			}
		}
		if err := s.messages(run, true); err != nil {
			return 0, last, run, err
		}
		last = run[len(run)-1].Seq
		clear(run)
		if closed {
			return reg.s.reason, last, run, nil
		}
	}
}

// pinger is a sink that keeps an idle connection alive: keepalive is
// called every heartbeat while the stream waits for messages.
type pinger interface {
	heartbeat() time.Duration
	keepalive() error
}

// followerPoll is how often a subscription whose from is past a
// follower's last seq looks again whether the follower caught up.
const followerPoll = 10 * time.Millisecond

// subscribe takes a snapshot of channel id after from and, if register is
// set and the channel is open, registers a subscriber for what follows.
// A from past the last seq of a follower (in cluster mode) may be valid:
// the reader saw it through another node, nearer the owner. subscribe
// then waits, up to a lease, for the follower to catch up; a snapshot
// whose lastSeq is still below from means that from is past the
// channel's end (or the owner is out of reach).
func (h *Hub) subscribe(ctx context.Context, id string, from int64, register bool) (snapshot, *registration, error) {
	var deadline time.Time
	for {
		snap, reg, err := h.subscribeOnce(ctx, id, from, register)
		if err != nil || from <= snap.lastSeq || !snap.follower {
			return snap, reg, err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(h.cluster.Lease())
			h.metrics.lagWaits.Inc()
		}
		if time.Now().After(deadline) {
			return snap, reg, nil
		}
		t := time.NewTimer(followerPoll)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return snapshot{}, nil, ctx.Err()
		}
	}
}

// peekTail returns a snapshot of channel id without messages, at once:
// only its epoch and seqs are wanted.
func (h *Hub) peekTail(ctx context.Context, id string) (snapshot, error) {
	snap, _, err := h.subscribeOnce(ctx, id, math.MaxInt64, false)
	return snap, err
}

// subscribeOnce is subscribe, without waiting for a follower to catch up.
func (h *Hub) subscribeOnce(ctx context.Context, id string, from int64, register bool) (snapshot, *registration, error) {
	if snap, ok := h.knownClosed(ctx, id); ok {
		return snap, nil, nil
	}
	req := &subscribeReq{from: from, result: make(chan snapshot, 1)}
	if register {
		req.sub = &subscriber{queue: make(chan *wire.Message, h.cfg.QueueLen)}
	}
	for {
		snap, c, err := call(ctx, h, id, func() any { return req }, req.result)
		if moved, ok := errors.AsType[*MovedError](err); ok && h.cluster != nil && moved.Owner != "" {
			// Another node owns the channel: follow it, then look again.
			if err := h.follow(ctx, id, moved); err != nil {
				return snapshot{}, nil, err
			}
			continue
		}
		if errors.Is(err, errClosedChannel) {
			rec, err := h.store.Channel(ctx, id)
			if err != nil {
				return snapshot{}, nil, storeErr(err)
			}
			if rec.Open() {
				continue // reopened: cannot happen, but do not serve it stale
			}
			return snapshot{epoch: rec.Epoch, persisted: rec.LastSeq, fromStore: rec.LastSeq, lastSeq: rec.LastSeq,
				contentType: rec.ContentType}, nil, nil
		}
		if err != nil {
			if c != nil && req.sub != nil {
				// The actor may have registered req.sub: unregister it.
				h.unsubscribe(c, req.sub)
			}
			return snapshot{}, nil, err
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

// knownClosed returns the snapshot of channel id if the page cache knows
// it is closed, which saves the store lookups that find it so. In cluster
// mode another node may have deleted the channel and created it again: the
// store's record is read first, and the cache is trusted only if it still
// names the same closed epoch.
func (h *Hub) knownClosed(ctx context.Context, id string) (snapshot, bool) {
	if h.cache == nil {
		return snapshot{}, false
	}
	select {
	case <-h.stop:
		return snapshot{}, false // shutting down: let get say so
	default:
	}
	epoch, last, ok := h.cache.closedChannel(id)
	if ok && h.cluster != nil {
		rec, err := h.store.Channel(ctx, id)
		if err != nil || rec.Open() || rec.Epoch != epoch || rec.LastSeq != last {
			h.InvalidateHistory(id)
			return snapshot{}, false
		}
	}
	return snapshot{epoch: epoch, persisted: last, fromStore: last, lastSeq: last}, ok
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

func (h *Hub) unregister(reg *registration) {
	if reg != nil {
		h.unsubscribe(reg.c, reg.s)
	}
}
