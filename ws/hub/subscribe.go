package hub

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wire"
)

// Sink receives one subscriber's stream (the WebSocket and the text
// stream of the front implement it). Calls come from one goroutine, in
// order: Hello once, then runs of contiguous messages, Live once (unless
// the channel was already closed), and End if the channel ends.
type Sink interface {
	Hello(h HelloInfo) error
	// Messages delivers a contiguous run; live tells whether they were
	// appended after the subscriber caught up.
	Messages(msgs []*wire.Message, live bool) error
	// Page delivers a history page: contiguous messages, already encoded
	// and shared with other readers.
	Page(p *Page) error
	// Live says that the messages up to seq were history, and what
	// follows is live.
	Live(seq int64) error
	// End says that the channel closed at seq, and everything was sent.
	End(seq int64) error
}

// HelloInfo is what a subscriber learns first.
type HelloInfo struct {
	Channel   string
	Epoch     int64
	From      int64
	LastSeq   int64
	Persisted int64
	Open      bool
	// ContentType is the channel's; "" for text.
	ContentType string
}

// maxRun bounds how many queued live messages go into one write, and
// maxRunBytes how much data.
const (
	maxRun      = 512
	maxRunBytes = 256 << 10
)

// Stream delivers channel id after from to s: the persisted history, the
// buffered messages, then live messages until the channel ends, ctx is done
// or the server stops. A subscriber that falls behind is detached by the
// actor and caught up again here, from the last message it was given;
// if the channel was taken over meanwhile (another epoch, in cluster mode),
// that would be another history, and the stream ends with ErrMoved so that
// the client resumes with its epoch.
func (h *Hub) Stream(ctx context.Context, id string, from int64, epoch string, s Sink) error {
	st := &streamer{h: h, ctx: ctx, id: id, from: from, s: s, started: time.Now(), last: from, first: true}
	if epoch != "" {
		if err := h.checkEpoch(ctx, id, from, epoch); err != nil {
			return err
		}
	}
	_, err := st.step()
	return err
}

// StreamParked is Stream without a goroutine of its own while nothing
// happens: once the subscriber is live and its queue is empty, the calling
// goroutine returns, and the stream goes on in a new goroutine when the
// actor queues a message or closes the queue, when ctx ends, or when a
// keep-alive ping is due. An idle subscriber thus costs no goroutine
// stack. done gets what stream would have returned, once, from whichever
// goroutine ends the stream.
//
// The end of ctx wakes a parked stream: through wake, if not nil, which
// whoever ends ctx must call after ending it (cheaper than a
// context.AfterFunc, whose registration in ctx costs a map); else through
// a context.AfterFunc.
func (h *Hub) StreamParked(ctx context.Context, id string, from int64, epoch string, s Sink, wake *Waker, done func(error)) {
	st := &streamer{h: h, ctx: ctx, id: id, from: from, s: s, started: time.Now(), last: from, first: true}
	p := &parking{wake: make(chan struct{}, 1)}
	p.n.Store(1) // this goroutine runs the stream
	p.resume = func() { st.resume(done) }
	notify := p.notify
	if pg, ok := s.(Pinger); ok {
		p.ping = pg.Heartbeat()
		p.timer = time.AfterFunc(p.ping, notify)
		p.timer.Stop()
	}
	if wake != nil {
		wake.f.Store(&notify)
		if ctx.Err() != nil {
			notify() // ended before wake was set: as AfterFunc would
		}
	} else {
		p.stopCtx = context.AfterFunc(ctx, notify)
	}
	st.park = p
	if epoch != "" {
		if err := h.checkEpoch(ctx, id, from, epoch); err != nil {
			p.finish()
			done(err)
			return
		}
	}
	st.resume(done)
}

// parking wakes a parked stream. notify counts events (a message queued,
// the queue closed, ctx done, a ping due); the count is 0 while no
// goroutine runs the stream, and the event that raises it from 0 starts
// one. A running stream parks only if no event came since it last looked
// (see streamer.drainParked), so none is lost.
type parking struct {
	n       atomic.Int64  // events since the stream last looked; 0: parked
	wake    chan struct{} // an event came while the stream runs (see drainParked)
	resume  func()        // runs the stream on, in the goroutine notify starts
	ping    time.Duration
	timer   *time.Timer // notifies when a keep-alive ping may be due; nil without pings
	stopCtx func() bool // stops the notification of ctx's end; nil with a Waker
}

// Waker wakes a parked stream when its context ends (see StreamParked):
// the code that ends the context calls Wake after it. Its zero value
// wakes nothing until StreamParked sets it. Safe for concurrent use.
type Waker struct{ f atomic.Pointer[func()] }

// Wake wakes the stream, if any; after the stream ended it does nothing.
func (w *Waker) Wake() {
	if f := w.f.Load(); f != nil {
		(*f)()
	}
}

// notify records an event, and starts a goroutine for the stream if it was
// parked, or wakes the one running it. It never blocks: the actor calls it.
func (p *parking) notify() {
	if p.n.Add(1) == 1 {
		go p.resume()
		return
	}
	select {
	case p.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// finish stops every notification of a stream that ended; a late one does
// nothing. Called by the goroutine that runs the stream.
func (p *parking) finish() {
	p.n.Store(math.MinInt64 / 2) // never back to 0: notify starts nothing
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.stopCtx != nil {
		p.stopCtx()
	}
}

// streamer is one subscriber's stream in progress: what the loop of
// stream keeps from one step to the next, so that a parked stream goes on
// in another goroutine. Only the goroutine running the stream uses it.
type streamer struct {
	h       *Hub
	ctx     context.Context
	id      string
	from    int64
	s       Sink
	started time.Time

	last       int64 // the last seq sent
	first      bool  // hello not sent yet
	sentLive   bool
	helloEpoch int64 // catching up again in another epoch: ErrMoved
	run        []*wire.Message
	reg        *Registration // set while live messages are drained
	park       *parking      // nil: the stream never parks
}

// resume runs the stream until it parks or ends, and gives done the
// outcome if it ended.
func (st *streamer) resume(done func(error)) {
	parked, err := st.step()
	if parked {
		return
	}
	st.park.finish()
	done(err)
}

// step runs the stream until it ends (parked false, and the error stream
// returns) or, for a parking stream, parks (parked true).
func (st *streamer) step() (parked bool, err error) {
	for {
		if st.reg == nil {
			ended, err := st.catchUp()
			if err != nil || ended {
				return false, err
			}
		}
		reason, err := st.drain()
		if err != nil {
			st.h.unregister(st.reg)
			st.reg = nil
			return false, err
		}
		switch reason {
		case reasonParked:
			return true, nil
		case reasonEnded:
			return false, st.s.End(st.reg.s.endSeq)
		case reasonShutdown:
			return false, ErrShuttingDown
		case reasonFailed:
			return false, ErrChannelFailed
		case reasonDeleted:
			return false, ErrChannelDeleted
		case reasonMoved:
			return false, ErrMoved
		}
		st.reg = nil // detached: catch up again from last
	}
}

// catchUp subscribes after the last seq sent and sends what came before
// the registration: hello the first time, the history, the buffered
// messages, and live once. ended reports that the channel is closed and
// everything was sent, end included; otherwise st.reg is set.
func (st *streamer) catchUp() (ended bool, err error) {
	h, s := st.h, st.s
	snap, reg, err := h.subscribeWith(st.ctx, st.id, st.last, true, st.park)
	if err != nil {
		return false, err
	}
	if !st.first && snap.epoch != st.helloEpoch {
		h.unregister(reg)
		return false, ErrMoved
	}
	st.helloEpoch = snap.epoch
	if st.last > snap.lastSeq {
		return false, &FromError{From: st.last, LastSeq: snap.lastSeq}
	}
	if st.first {
		st.first = false
		err := s.Hello(HelloInfo{Channel: st.id, Epoch: snap.epoch, From: st.from, LastSeq: snap.lastSeq,
			Persisted: snap.persisted, Open: snap.open, ContentType: snap.contentType})
		if err != nil {
			h.unregister(reg)
			return false, err
		}
	}
	st.last, err = h.history(st.ctx, historyRead{id: st.id, epoch: snap.epoch, upto: snap.fromStore,
		persisted: snap.persisted, final: !snap.open, binary: persist.BinaryType(snap.contentType)}, st.last, s)
	if err != nil {
		h.unregister(reg)
		return false, err
	}
	// A cached page may have covered the start of the buffered copy.
	buffered := snap.buffered
	for len(buffered) > 0 && buffered[0].Last() <= st.last {
		buffered = buffered[1:]
	}
	if len(buffered) > 0 && buffered[0].Seq <= st.last {
		buffered[0] = buffered[0].From(st.last + 1)
	}
	if err := sendRuns(s, buffered, false); err != nil {
		h.unregister(reg)
		return false, err
	}
	if n := len(buffered); n > 0 {
		st.last = buffered[n-1].Last()
	}
	if reg == nil {
		// Closed channel: everything came from the store.
		if !st.sentLive {
			h.metrics.catchup.Observe(time.Since(st.started).Seconds())
		}
		return true, s.End(st.last)
	}
	if !st.sentLive {
		st.sentLive = true
		h.metrics.catchup.Observe(time.Since(st.started).Seconds())
		if err := s.Live(st.last); err != nil {
			h.unregister(reg)
			return false, err
		}
	}
	st.reg = reg
	return false, nil
}

// reasonParked is drain's reason when a parking stream parked.
const reasonParked = -1

// drain sends live messages from the queue until the actor closes it, and
// returns why it did; a parking stream also returns, with reasonParked,
// when nothing is left to do.
func (st *streamer) drain() (int, error) {
	if st.park != nil {
		return st.drainParked()
	}
	q := st.reg.s.queue
	var idle <-chan time.Time
	p, _ := st.s.(Pinger)
	if p != nil {
		t := time.NewTicker(p.Heartbeat())
		defer t.Stop()
		idle = t.C
	}
	for {
		var m *wire.Message
		var ok bool
		select {
		case m, ok = <-q:
		case <-idle:
			if err := p.Keepalive(); err != nil {
				return 0, err
			}
			continue
		case <-st.ctx.Done():
			return 0, st.ctx.Err()
		}
		if !ok {
			return st.reg.s.reason, nil
		}
		if closed, err := st.send(m); err != nil {
			return 0, err // the queue may still be open: reason is not ours to read
		} else if closed {
			return st.reg.s.reason, nil
		}
	}
}

// parkAfter is how long a parking stream with nothing to send keeps its
// goroutine before it parks: a stream that gets a message more often than
// that (most live streams) keeps its goroutine and delivers as a blocked
// one does, and an idle one lets its stack go soon.
const parkAfter = 250 * time.Millisecond

// drainParked is drain for a parking stream: it sends what is queued,
// waits up to parkAfter for more, pings if a ping is due, and parks once
// no event came since it last looked. Every event (a push, the close, the
// end of ctx, a ping due) raises p.n and, while the stream runs, leaves a
// token in p.wake; a token may be stale, which costs one more look.
func (st *streamer) drainParked() (int, error) {
	sub, p := st.reg.s, st.park
	pg, _ := st.s.(Pinger)
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	armed := false // t runs: parkAfter since the last message sent
	idle := false  // nothing came for parkAfter
	for {
		seen := p.n.Load()
		if err := st.ctx.Err(); err != nil {
			return 0, err
		}
		m, closed := sub.live.pop()
		switch {
		case m != nil:
			if closed, err := st.send(m); err != nil {
				return 0, err // the queue may still be open: reason is not ours to read
			} else if closed {
				return sub.reason, nil
			}
			idle, armed = false, false
			continue
		case closed:
			return sub.reason, nil
		}
		if !idle {
			// Nothing queued: wait for an event, or parkAfter.
			if !armed {
				if t == nil {
					t = time.NewTimer(parkAfter)
				} else {
					t.Reset(parkAfter)
				}
				armed = true
			}
			select {
			case <-p.wake:
			case <-st.ctx.Done():
				return 0, st.ctx.Err()
			case <-t.C:
				idle = true // look once more, then park
			}
			continue
		}
		if pg != nil {
			if err := pg.Keepalive(); err != nil {
				return 0, err
			}
			p.timer.Reset(p.ping)
		}
		if cap(st.run) > 16 {
			st.run = nil // a parked stream keeps no room for a burst
		}
		sub.live.release() // nor for its queue
		if p.n.CompareAndSwap(seen, 0) {
			return reasonParked, nil
		}
	}
}

// send writes m and what else is queued behind it (up to maxRun messages
// and maxRunBytes) in one run; closed reports that the queue was found
// closed after them.
func (st *streamer) send(m *wire.Message) (closed bool, err error) {
	sub := st.reg.s
	run := append(st.run[:0], m)
	n, size := m.Len(), len(m.Data)
	for n < maxRun && size < maxRunBytes {
		var m *wire.Message
		if m, closed = sub.tryPop(); m == nil {
			break
		}
		run = append(run, m)
		n += m.Len()
		size += len(m.Data)
	}
	if n == len(run) {
		err = st.s.Messages(run, true)
	} else {
		err = sendRuns(st.s, run, true) // a run: cut into frames
	}
	if err == nil {
		st.last = run[len(run)-1].Last()
	}
	clear(run)
	st.run = run[:0]
	return closed, err
}

// Pinger is a Sink that keeps an idle connection alive: Keepalive is
// called every Heartbeat while the stream waits for messages.
type Pinger interface {
	Heartbeat() time.Duration
	Keepalive() error
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
func (h *Hub) subscribe(ctx context.Context, id string, from int64, register bool) (snapshot, *Registration, error) {
	return h.subscribeWith(ctx, id, from, register, nil)
}

// subscribeWith is subscribe for a stream that parks (park not nil): the
// actor notifies park of what it does to the subscriber's queue.
func (h *Hub) subscribeWith(ctx context.Context, id string, from int64, register bool, park *parking) (snapshot, *Registration, error) {
	var deadline time.Time
	for {
		snap, reg, err := h.subscribeOnce(ctx, id, from, register, park)
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
	snap, _, err := h.subscribeOnce(ctx, id, math.MaxInt64, false, nil)
	return snap, err
}

// subscribeOnce is subscribe, without waiting for a follower to catch up.
func (h *Hub) subscribeOnce(ctx context.Context, id string, from int64, register bool, park *parking) (snapshot, *Registration, error) {
	if snap, ok := h.knownClosed(ctx, id); ok {
		return snap, nil, nil
	}
	req := &subscribeReq{from: from, result: make(chan snapshot, 1)}
	if register {
		if park != nil {
			req.sub = &subscriber{live: liveQueue{max: h.cfg.QueueLen}, park: park}
		} else {
			req.sub = &subscriber{queue: make(chan *wire.Message, h.cfg.QueueLen)}
		}
	}
	for {
		snap, c, err := call(ctx, h, id, func() any { return req }, req.result)
		if moved, ok := errors.AsType[*MovedError](err); ok && moved.Owner != "" {
			// Another node owns the channel: follow it, then look again.
			followed, err := h.peers.follow(ctx, id, moved)
			if err != nil {
				return snapshot{}, nil, err
			}
			if followed {
				continue
			}
		}
		if errors.Is(err, errClosedChannel) {
			rec, err := h.store.Channel(ctx, id)
			if err != nil {
				return snapshot{}, nil, StoreErr(err)
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
		return snap, &Registration{c: c, s: req.sub}, nil
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
	if ok && !h.peers.stillClosed(ctx, id, epoch, last) {
		h.InvalidateHistory(id)
		return snapshot{}, false
	}
	return snapshot{epoch: epoch, persisted: last, fromStore: last, lastSeq: last}, ok
}

// Registration is a subscriber registered with a channel actor.
type Registration struct {
	c *channel
	s *subscriber
}

func (h *Hub) unsubscribe(c *channel, s *subscriber) {
	select {
	case c.inbox <- unsubscribeReq{sub: s}:
	case <-c.done:
	}
}

func (h *Hub) unregister(reg *Registration) {
	if reg != nil {
		h.unsubscribe(reg.c, reg.s)
	}
}
