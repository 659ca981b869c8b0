package hub

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wire"
)

// Why a subscriber's live queue was closed by the actor.
const (
	reasonDetached = iota + 1 // queue overflowed: catch up again from history
	reasonEnded               // the channel closed at endSeq
	reasonShutdown            // the server is stopping
	reasonFailed              // the channel failed (ErrChannelFailed)
	reasonDeleted             // the channel was deleted (ErrChannelDeleted)
	reasonMoved               // another node took the channel over: resume there
)

// snapshot is the actor's answer to a subscribe, taken in one step with the
// registration: messages 1..fromStore are read from the store, buffered
// holds the messages after max(from, fromStore) up to lastSeq, and live
// messages (lastSeq+1..) go to the subscriber's queue. persisted is the
// channel's durable watermark (fromStore ≤ persisted).
type snapshot struct {
	epoch     int64
	persisted int64
	fromStore int64
	lastSeq   int64
	open      bool
	stopping  bool // the server is shutting down: nothing was registered
	follower  bool // taken by a follower (cluster mode), which may lag the owner
	// contentType is the channel's; "" for text.
	contentType string
	buffered    []*wire.Message
}

type (
	appendReq struct {
		data   []byte
		time   int64
		result chan appendResult // the last message's seq, at once
		// persisted, if not nil, gets a second answer once the last
		// message is durable (or will not be: the channel failed or the
		// server stops).
		persisted chan appendResult
		// rest are more messages of the same request, appended after data
		// in the same step: nothing comes between them, and they are
		// persisted in the same batch. The result is the last one's seq.
		rest [][]byte
		// commit, if not nil, is stream state committed in the same
		// transaction as the messages (a producer's state, a Stream-Seq).
		commit *Commit
	}
	appendResult struct {
		seq int64
		err error
	}
	subscribeReq struct {
		sub    *subscriber // nil: snapshot only
		from   int64
		result chan snapshot
	}
	unsubscribeReq struct{ sub *subscriber }
	deleteReq      struct{} // the channel is deleted from the store: stop
	closeReq       struct{ result chan appendResult }
	persistResult  struct {
		last  int64
		close bool
		err   error
	}
	waiter struct {
		seq    int64
		result chan appendResult
	}
)

// channel is the actor of one open channel. Its goroutine, run, alone owns
// the sequence counter, the buffer of unpersisted messages, the subscribers
// and the persisted watermark; everything else talks to it through inbox.
type channel struct {
	id        string
	epoch     int64
	createdAt time.Time
	gen       *persist.Generator
	binary    bool // the channel carries bytes: its frames carry base64
	ctype     string
	h         *Hub
	// genCounted: Create already counted the generator's rate in the
	// hub's; set before the actor starts.
	genCounted bool

	inbox chan any
	// result is the result of the batch in flight, set by its Done before
	// it signals sigPersisted (at most one batch is in flight); the actor
	// reads it after taking the signal.
	result persistResult
	// started is closed by run once startWhen subscribers are registered;
	// the generator waits for it. Nil when the generator starts at once.
	started chan struct{}
	done    chan struct{} // closed when run returns
	// wake says that sig has signals for the actor (see signal).
	// Capacity 1: one pending wake-up stands for any number of signals.
	wake chan struct{}
	// sig holds the signals not yet taken by the actor (sigWheel and
	// the others); the actor takes them all at once.
	sig atomic.Uint32

	// Published by run for readers of channel stats; read by anyone.
	statLast      atomic.Int64
	statPersisted atomic.Int64
	statSubs      atomic.Int64

	// deleting is set by Hub.Delete while it deletes the channel from the
	// store: a batch refused because the channel is not found then means
	// deleted, not failed.
	deleting atomic.Bool

	// Owned by run.
	lastSeq   int64
	p         int64           // highest seq confirmed committed
	buf       []*wire.Message // base..lastSeq: recent persisted ones, then p+1..lastSeq; an entry may be a run (wire.NewRun)
	base      int64           // seq of buf[0]; lastSeq+1 when buf is empty
	bufBytes  int64           // cost of the unpersisted messages (see msgCost)
	retained  int64           // cost of the persisted messages kept in buf
	inFlight  bool            // a batch is with the writer (an empty close batch has last seq 0)
	subs      map[*subscriber]struct{}
	commits   []*Commit // stream state to commit with the next batch
	flight    []*Commit // stream state of the batch in flight
	waiters   []waiter  // appends waiting for persistence, by seq
	closing   bool      // closed by its producer: flushing, then end
	closers   []chan appendResult
	stopping  bool  // server shutdown: flushing, then exit
	timerOn   bool  // a flush is due at flushTick
	flushTick int64 // the hub wheel's tick
	g         generator
	// roomQueued: c is in the hub's roomWait (see Hub.waitRoom); guarded
	// by the hub's roomMu.
	roomQueued bool
	closeSent  bool // the final batch carries Close
	gaveUp     bool // shutdown gave up on persisting the rest
	active     bool // a request came since the last idle check
	evicted    bool // idle: the actor leaves, the store holds the channel
	startWhen  int  // subscribers to wait for before closing started; 0 once closed
	// failed is the error of a batch the writer refused for good: the
	// channel stops.
	failed error
	// deleted: the channel was deleted from the store; the actor stops.
	deleted bool
	left    int // set by leave: exit now, ending the subscribers for this reason
	// lettingGo: the node lost, or cannot prove, its lease (Relinquish):
	// appends and closes are refused as moved, what was accepted is
	// flushed (the epoch fence decides whether it is written), then the
	// actor leaves with reasonMoved.
	lettingGo bool

	// role is what the actor does as its channel's owner (owner.go) or
	// as a follower of the channel another node owns (follower.go). Set
	// before run starts.
	role   role
	remote chan remoteEvent // leave orders (cluster mode, fence.go); nil in single-server mode
}

// role is what differs between the actor of a channel this node owns
// (owner.go) and a follower of a channel another node owns (follower.go).
// Its methods are called by run, except elsewhere, which is safe for
// concurrent use.
type role interface {
	// elsewhere returns nil for an owner; for a follower, the
	// *MovedError naming the owner, which every write it is asked gets.
	elsewhere() error
	// flush hands the unpersisted messages to the writer; a follower's
	// are the owner's to write.
	flush(c *channel)
	// publish hands an event of the channel to its followers on other
	// nodes; a follower publishes nothing.
	publish(c *channel, ev Event)
	// events returns the channel that says the owner's events wait for a
	// follower; nil (never ready) for an owner.
	events() <-chan struct{}
	// onEvents applies those events.
	onEvents(c *channel)
	// unsubscribed is told that a subscriber went: a follower leaves with
	// its last one.
	unsubscribed(c *channel)
	// exit releases what the role holds when the actor exits.
	exit(c *channel)
}

func newChannel(h *Hub, rec persist.Channel) *channel {
	c := &channel{
		id:        rec.ID,
		epoch:     rec.Epoch,
		createdAt: rec.CreatedAt,
		gen:       rec.Generator,
		binary:    rec.Binary(),
		ctype:     rec.ContentType,
		h:         h,
		inbox:     make(chan any, 64),
		done:      make(chan struct{}),
		wake:      make(chan struct{}, 1),
		lastSeq:   rec.LastSeq,
		p:         rec.LastSeq,
		base:      rec.LastSeq + 1,
		subs:      make(map[*subscriber]struct{}),
		role:      owner{},
	}
	if h.cluster != nil {
		c.remote = make(chan remoteEvent, 1) // Relinquish
	}
	c.statLast.Store(rec.LastSeq)
	c.statPersisted.Store(rec.LastSeq)
	return c
}

// Signals to an actor (see channel.signal). They come from other
// goroutines: the hub's wheel, Hub.Stop, Hub.released and the persist
// writer.
const (
	sigWheel     = 1 << iota // a generator line or a flush may be due
	sigStop                  // the server is stopping: flush, then exit
	sigAbandon               // shutdown ran out of time with the store unreachable
	sigRoom                  // released messages left room for the paused generator (see Hub.released)
	sigPersisted             // the batch in flight is done: its result is in c.result
)

// signal gives c's actor the signals bits and wakes it, unless a wake-up
// is pending already: the actor takes every signal at its next wake-up.
// The wheel and the hub thus wake an actor through one channel, and the
// actor's loop waits on few channels, none of them shared with other
// actors (a blocking select locks every channel it waits on).
func (c *channel) signal(bits uint32) {
	if c.sig.Or(bits) != 0 {
		return // who set the earlier signals sends, or has sent, the wake-up
	}
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// isClosed reports whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (c *channel) epochString() string { return strconv.FormatInt(c.epoch, 10) }

// run is the actor loop. It returns after the channel closed (and the close
// is durable) or after stop was closed and everything is flushed. Hub.Stop
// signals sigStop, then sigAbandon, to every actor that runs; an actor
// started after either was closed sees it here.
func (c *channel) run(stop, abandon <-chan struct{}) {
	defer close(c.done)
	// A generator's channel is never evicted (see evictable): it needs
	// no idle timer, whose channel its loop would wait on too.
	var idle *time.Timer
	var idleC <-chan time.Time
	if c.gen == nil {
		idle = time.NewTimer(c.h.cfg.IdleEvict)
		defer idle.Stop()
		idleC = idle.C
	}
	if isClosed(stop) {
		c.signal(sigStop)
	}
	if isClosed(abandon) {
		c.signal(sigAbandon)
	}
	if c.startWhen == 0 {
		c.genBegin()
	}
	for {
		select {
		case req := <-c.inbox:
			c.active = true
			c.handle(req)
		case <-idleC:
			c.onIdle(idle)
		case r := <-c.remote:
			c.onRemote(r)
		case <-c.role.events():
			c.role.onEvents(c)
		case <-c.wake:
			c.onSignal(c.sig.Swap(0))
		}
		if c.finished() {
			c.exit()
			return
		}
	}
}

func (c *channel) handle(req any) {
	switch r := req.(type) {
	case *appendReq:
		c.onAppend(r)
	case *subscribeReq:
		r.result <- c.onSubscribe(r)
	case deleteReq:
		c.deleted = true
	case unsubscribeReq:
		if _, ok := c.subs[r.sub]; ok {
			delete(c.subs, r.sub)
			c.h.metrics.subscribers.Dec()
			c.statSubs.Store(int64(len(c.subs)))
			c.role.unsubscribed(c)
		}
	case closeReq:
		if c.left != 0 || c.lettingGo || c.role.elsewhere() != nil {
			r.result <- appendResult{err: c.movedErr()}
			return
		}
		if c.gen != nil { // the generator closes it after its last line
			r.result <- appendResult{err: ErrGeneratorChannel}
			return
		}
		if c.closing {
			r.result <- appendResult{err: ErrChannelClosed}
			return
		}
		c.closing = true
		c.closers = append(c.closers, r.result)
		c.flush()
	}
}

func (c *channel) onAppend(r *appendReq) {
	switch {
	case c.left != 0 || c.lettingGo || c.role.elsewhere() != nil:
		r.result <- appendResult{err: c.movedErr()}
		return
	case c.gen != nil:
		// Lines are seqs: another message would shift them. The
		// generator appends its lines in the actor (generator.go).
		r.result <- appendResult{err: ErrGeneratorChannel}
		return
	case c.closing:
		r.result <- appendResult{err: ErrChannelClosed}
		return
	case c.stopping:
		r.result <- appendResult{err: ErrShuttingDown}
		return
	}
	msgs, cost := c.build(r)
	// All of the request or nothing: its messages are reserved at once.
	if !c.reserve(int64(len(msgs)), cost) {
		r.result <- appendResult{err: ErrOverloaded}
		return
	}
	for _, m := range msgs {
		c.add(m)
		for i := range m.Len() {
			c.publish(EventMessage, m.Seq+int64(i), m.Time, m.At(i))
		}
	}
	last := msgs[len(msgs)-1].Last()
	if r.commit != nil {
		r.commit.seq = last
		c.commits = append(c.commits, r.commit)
	}
	r.result <- appendResult{seq: last}
	if r.persisted != nil {
		c.waiters = append(c.waiters, waiter{seq: last, result: r.persisted})
		if !c.inFlight {
			c.flush()
		}
	}
	if !c.timerOn && !c.inFlight {
		c.armTimer(c.h.cfg.PersistInterval)
	}
}

func (c *channel) detach(s *subscriber, reason int) {
	delete(c.subs, s)
	s.reason = reason
	s.endSeq = c.lastSeq
	s.closeQueue()
	c.h.metrics.subscribers.Dec()
	c.statSubs.Store(int64(len(c.subs)))
	if reason == reasonDetached {
		c.h.metrics.resyncs.Inc()
	}
}

func (c *channel) onSubscribe(r *subscribeReq) snapshot {
	fromStore := min(c.p, c.base-1)
	snap := snapshot{epoch: c.epoch, persisted: c.p, fromStore: fromStore, lastSeq: c.lastSeq, open: true,
		contentType: c.ctype, follower: c.role.elsewhere() != nil}
	if c.stopping {
		snap.open = false
		snap.stopping = true
		return snap
	}
	if r.from > c.lastSeq {
		return snap // the caller reports the bad from
	}
	start := max(r.from, fromStore) + 1
	if start <= c.lastSeq {
		i := c.index(start)
		snap.buffered = slices.Clone(c.buf[i:])
		snap.buffered[0] = snap.buffered[0].From(start)
	}
	if r.sub != nil {
		c.subs[r.sub] = struct{}{}
		c.h.metrics.subscribers.Inc()
		c.statSubs.Store(int64(len(c.subs)))
		if c.startWhen > 0 && len(c.subs) >= c.startWhen {
			c.startWhen = 0
			close(c.started)
			c.genBegin()
		}
	}
	return snap
}

// armTimer has the buffer flushed in d, or a little earlier: at the
// hub wheel's tick that d ends in.
func (c *channel) armTimer(d time.Duration) {
	c.flushTick = c.h.wheel.tick(time.Now().Add(d))
	c.timerOn = true
	c.h.wheel.at(c, c.flushTick)
}

// onSignal does what the signals bits ask: a persisted batch, a stop, a
// paused generator's room, then the work due at the wheel's tick.
func (c *channel) onSignal(bits uint32) {
	if bits&sigPersisted != 0 {
		c.onPersisted(c.result)
	}
	if bits&sigStop != 0 && !c.stopping {
		c.stopping = true
		c.flush()
	}
	if bits&sigAbandon != 0 && !c.gaveUp {
		// Shutdown ran out of time with the store unreachable.
		c.gaveUp = true
		c.logLost(ErrShuttingDown)
		return
	}
	if bits&sigRoom != 0 && c.g.room {
		c.g.room = false
		c.generate()
	}
	if bits&sigWheel != 0 {
		c.onWake()
	}
}

// onWake does what is due at the wheel's tick: the generator's lines, then
// a flush.
func (c *channel) onWake() {
	now := c.h.wheel.now()
	if c.genDue(now) {
		c.generate()
	}
	if c.timerOn && now >= c.flushTick {
		c.timerOn = false
		c.flush()
	}
}

// build makes the messages of an append request, numbered after lastSeq,
// and returns them with their total cost (see msgCost). A request of
// several messages (a JSON batch) becomes one run (wire.NewRun): its
// bodies copied end to end into one array, so that it costs about its
// bytes however small its messages.
func (c *channel) build(r *appendReq) ([]*wire.Message, int64) {
	var m *wire.Message
	if len(r.rest) == 0 {
		m = newMessage(c.binary, c.lastSeq+1, r.time, r.data)
	} else {
		n := len(r.data)
		for _, d := range r.rest {
			n += len(d)
		}
		// slices.Grow rounds the capacities up to what is allocated, so
		// that MemSize is what the run occupies.
		data := slices.Grow([]byte(nil), n)
		ends := slices.Grow([]uint32(nil), 1+len(r.rest))
		data = append(data, r.data...)
		ends = append(ends, uint32(len(data)))
		for _, d := range r.rest {
			data = append(data, d...)
			ends = append(ends, uint32(len(data)))
		}
		m = wire.NewRun(c.lastSeq+1, r.time, data, ends, c.binary)
	}
	return []*wire.Message{m}, msgCost(m)
}

// index returns the index in buf of the entry that holds seq (base ≤ seq
// ≤ lastSeq).
func (c *channel) index(seq int64) int {
	if int64(len(c.buf)) == c.lastSeq-c.base+1 {
		return int(seq - c.base) // no run: an entry per seq
	}
	i, _ := slices.BinarySearchFunc(c.buf, seq, func(m *wire.Message, seq int64) int {
		switch {
		case m.Last() < seq:
			return -1
		case m.Seq > seq:
			return 1
		}
		return 0
	})
	return i
}

// add appends m, the next message or run, reserved already, and fans it
// out: a run is one entry of the buffer and of each subscriber's queue.
func (c *channel) add(m *wire.Message) {
	c.lastSeq += int64(m.Len())
	c.buf = append(c.buf, m)
	c.bufBytes += msgCost(m)
	c.statLast.Store(c.lastSeq)
	c.h.metrics.appended.Add(float64(m.Len()))
	for s := range c.subs {
		if !s.push(m) {
			// A slow consumer: detach it rather than wait or drop. It
			// catches up from history at its own pace and re-attaches.
			c.detach(s, reasonDetached)
		}
	}
}

// finished reports whether the actor is done: the close is durable, or the
// server is stopping and everything it could persist is persisted.
func (c *channel) finished() bool {
	if c.failed != nil || c.deleted || c.evicted || (c.left != 0 && !c.inFlight) || (c.stopping && c.role.elsewhere() != nil) {
		return true
	}
	if c.gaveUp {
		// Shutdown ran out of time: do not wait for a batch the writer may
		// be retrying against an unreachable store (its Done signals an
		// actor that is gone).
		return true
	}
	if c.inFlight {
		return false
	}
	if c.closeSent {
		return true
	}
	return (c.stopping || c.lettingGo) && c.lastSeq == c.p
}

func (c *channel) logLost(err error) {
	if c.lastSeq > c.p {
		c.h.log.Error("messages not persisted before shutdown", slog.String("channel", c.id),
			slog.Int64("from", c.p+1), slog.Int64("to", c.lastSeq), slog.Any("err", err))
	}
}

// exit ends every subscriber and answers every pending request.
func (c *channel) exit() {
	reason, err := reasonShutdown, ErrShuttingDown
	switch {
	case c.deleted:
		reason, err = reasonDeleted, ErrChannelDeleted
	case c.failed != nil:
		reason, err = reasonFailed, ErrChannelFailed
	case c.closeSent && !c.inFlight: // the close is durable
		reason, err = reasonEnded, nil
	case c.left != 0:
		reason, err = c.left, c.movedErr()
	case c.lettingGo:
		reason, err = reasonMoved, c.movedErr()
	}
	ended := reason == reasonEnded
	switch {
	case ended:
		c.publish(EventEnd, c.lastSeq, 0, nil)
	case c.deleted:
		c.publish(EventDeleted, c.lastSeq, 0, nil)
	}
	c.role.exit(c)
	c.logLeave()
	for s := range c.subs {
		c.detach(s, reason)
	}
	for _, w := range c.waiters {
		w.result <- appendResult{err: err}
	}
	for _, r := range c.closers {
		if ended {
			r <- appendResult{seq: c.lastSeq}
		} else {
			r <- appendResult{err: err}
		}
	}
	c.h.remove(c, ended)
	// Requests that raced with the exit are answered by the hub's retry:
	// callers select on done.
}

// request sends req to the actor, or reports false if the actor has exited.
func (c *channel) request(ctx context.Context, req any) (bool, error) {
	select {
	case c.inbox <- req:
		return true, nil
	case <-c.done:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}
