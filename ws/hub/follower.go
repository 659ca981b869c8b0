package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/messages-server/messages/internal/backoff"
	"github.com/messages-server/messages/ws/wire"
)

// A follower is a channel actor on a node that does not own the channel
// (cluster mode). It takes no appends: its messages are the owner's, as
// the owner publishes them (Cluster.Follow), from the owner's snapshot on.
// Local subscribers attach to it exactly as to an owner, with the same
// snapshot-and-register step, so they get the same frames. It never
// writes to the store. It leaves, ending its subscribers so that they
// catch up again or resume, when a message is missing (reasonDetached:
// they catch up from the store and a new follower), when the channel
// moves to another epoch (reasonMoved: they resume, and get reset if they
// saw a lost tail), when the owner does not answer a ping, or when its
// last subscriber goes.

// follower is the role of a follower's actor.
type follower struct {
	owner string      // the node that owns the channel
	queue *eventQueue // the owner's events, in order
	stop  func()      // ends the subscription to the owner's events; set before run starts
}

// elsewhere returns the *MovedError naming the owner: a follower takes no
// writes.
func (f *follower) elsewhere() error { return &MovedError{Owner: f.owner} }

// flush writes nothing: a follower's messages are the owner's to write.
func (f *follower) flush(*channel) {}

// publish publishes nothing: the owner does.
func (f *follower) publish(*channel, Event) {}

func (f *follower) events() <-chan struct{} { return f.queue.wake }

// unsubscribed makes the follower leave with its last subscriber: nobody
// is left to follow for.
func (f *follower) unsubscribed(c *channel) {
	if len(c.subs) == 0 {
		c.leave(reasonMoved)
	}
}

// exit ends the subscription to the owner's events and drops what was not
// applied.
func (f *follower) exit(c *channel) {
	if f.stop != nil {
		f.stop()
	}
	f.queue.close(c.h)
}

// remoteEvent reaches an actor on its remote channel: an order to leave
// for a reason (the owner's events come through a follower's events
// queue).
type remoteEvent struct {
	ev    Event
	leave int
	// letGo asks an owner to flush what it accepted, then leave (see
	// channel.lettingGo).
	letGo bool
}

// eventOverhead is what a queued event costs besides its data: its Event
// in the queue's backing array, which grows by doubling.
const eventOverhead = 2 * 96

// eventQueue holds the owner's events for a follower's actor, in order.
// It starts empty and grows on demand; what it holds counts against the
// hub's memory bound (and the channel's), and an event that would pass
// either is lost: the follower then leaves to resync. Its methods are
// safe for concurrent use.
type eventQueue struct {
	wake chan struct{} // capacity 1: events are waiting

	mu     sync.Mutex
	events []Event // guarded by mu
	bytes  int64   // guarded by mu: what events cost, counted in the hub's memBytes
	lost   bool    // guarded by mu: an event was dropped
}

// follow starts a follower of channel id, owned by moved.Owner, unless an
// actor of id already runs here. On return the caller looks the channel
// up again: it finds the follower, or, if the owner did not answer, may
// take the channel over once the owner's lease has expired (follow waits
// for that).
func (h *Hub) follow(ctx context.Context, id string, moved *MovedError) error {
	release, err := h.claim(ctx, id)
	if err != nil {
		return err
	}
	defer release()
	if h.actor(id) != nil {
		return nil // installed meanwhile: the caller finds it
	}
	rec, err := h.store.Channel(ctx, id)
	if err != nil {
		return StoreErr(err)
	}
	rec.Generator = nil // a generator runs on the owner
	c := newChannel(h, rec)
	f := &follower{owner: moved.Owner, queue: &eventQueue{wake: make(chan struct{}, 1)}}
	c.role = f
	snap, stop, err := h.cluster.Follow(ctx, moved.Owner, id, func(ev Event) { f.queue.deliver(h, ev) })
	if errors.Is(err, ErrNoOwner) {
		// The owner is gone: once its lease expires, the caller's next
		// look takes the channel over.
		// A stopping owner releases its lease early: look again soon.
		wait := min(max(time.Until(moved.Expires), 10*time.Millisecond), maxForwardPoll)
		if !backoff.Sleep(ctx, wait) {
			return ctx.Err()
		}
		return nil
	}
	if errors.Is(err, ErrMoved) || errors.Is(err, ErrChannelClosed) {
		// The owner changed or closed the channel meanwhile: the caller
		// looks again, after a pause that bounds the loop.
		if !backoff.Sleep(ctx, 20*time.Millisecond) {
			return ctx.Err()
		}
		return nil
	}
	if err != nil {
		return err
	}
	f.stop = stop
	c.adopt(snap)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		stop()
		h.forget(c)
		return ErrShuttingDown
	}
	h.channels[id] = c
	h.startActor(c)
	h.wg.Go(func() { h.watch(c, f.owner) })
	return nil
}

// adopt sets a new follower's state from the owner's snapshot. Its
// buffered messages count against the hub's memory bounds as an owner's
// do, but are never refused: they are the owner's to bound.
func (c *channel) adopt(snap Snapshot) {
	c.epoch, c.lastSeq, c.p = snap.Epoch, snap.LastSeq, snap.Persisted
	// The cluster layer decoded the messages as text: binary channels'
	// frames carry base64.
	c.buf = make([]*wire.Message, len(snap.Messages))
	for i, m := range snap.Messages {
		c.buf[i] = newMessage(c.binary, m.Seq, m.Time, m.Data)
	}
	c.base = c.lastSeq + 1
	if len(c.buf) > 0 {
		c.base = c.buf[0].Seq
	}
	for _, m := range c.buf {
		if m.Seq > c.p {
			c.bufBytes += msgCost(m)
		} else {
			c.retained += msgCost(m)
		}
	}
	c.h.bufferedMsgs.Add(c.lastSeq - c.p)
	c.h.memBytes.Add(c.bufBytes + c.retained)
	c.h.makeRoom()
	c.h.retainedBytes.Add(c.retained)
	c.statLast.Store(c.lastSeq)
	c.statPersisted.Store(c.p)
}

// deliver queues an owner's event for the follower's actor without
// blocking. Called by the cluster layer.
func (q *eventQueue) deliver(h *Hub, ev Event) {
	cost := int64(len(ev.Data)) + eventOverhead
	q.mu.Lock()
	switch {
	case q.lost: // the actor leaves: nothing more is needed
	case q.bytes+cost > h.cfg.MaxChannelBytes || h.memBytes.Load()+cost > h.cfg.MaxBufferedBytes:
		q.lost = true
	default:
		q.events = append(q.events, ev)
		q.bytes += cost
		h.memBytes.Add(cost)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take empties q and returns what it held, and whether an event was lost.
func (q *eventQueue) take(h *Hub) ([]Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	events, lost := q.events, q.lost
	h.memBytes.Add(-q.bytes)
	q.events, q.bytes = nil, 0
	return events, lost
}

// close empties q for good: the follower's actor has exited, and events
// that still arrive are dropped uncounted.
func (q *eventQueue) close(h *Hub) {
	q.mu.Lock()
	defer q.mu.Unlock()
	h.memBytes.Add(-q.bytes)
	q.events, q.bytes, q.lost = nil, 0, true
}

// onEvents applies the owner's events queued for a follower. Called by
// run.
func (f *follower) onEvents(c *channel) {
	events, lost := f.queue.take(c.h)
	if lost {
		c.leave(reasonDetached) // an event was lost
		return
	}
	for _, ev := range events {
		c.onRemote(remoteEvent{ev: ev})
		if c.left != 0 || c.deleted || c.closeSent {
			return // what follows is for the next follower
		}
	}
}

// watch pings owner, the node that owns follower c's channel, every half
// lease while c runs, and makes c leave when the owner does not answer or
// runs another epoch, or when c has had no subscriber for a whole period.
func (h *Hub) watch(c *channel, owner string) {
	t := time.NewTicker(h.cluster.Lease() / 2)
	defer t.Stop()
	idle := false
	for {
		select {
		case <-t.C:
		case <-c.done:
			return
		}
		leave := 0
		ctx, cancel := context.WithTimeout(h.ctx, h.cluster.Lease()/2)
		epoch, err := h.cluster.Ping(ctx, owner, c.id)
		cancel()
		switch {
		case h.ctx.Err() != nil:
			return
		case err != nil || epoch != c.epoch:
			leave = reasonMoved
		case c.statSubs.Load() == 0:
			if idle {
				leave = reasonMoved // nobody to tell
			}
			idle = true
		default:
			idle = false
		}
		if leave != 0 {
			select {
			case c.remote <- remoteEvent{leave: leave}:
			case <-c.done:
			}
			return
		}
	}
}

// onRemote applies an event that reached the actor on its remote channel.
// Called by run.
func (c *channel) onRemote(r remoteEvent) {
	switch ev := r.ev; {
	case r.letGo && c.role.elsewhere() == nil:
		c.lettingGo = true
		c.flush()
	case r.leave != 0:
		c.leave(r.leave)
	case c.role.elsewhere() == nil: // the owner's own events come from nowhere
	case ev.Epoch < c.epoch:
		// A late event of an earlier owner: the epoch is already gone.
	case ev.Epoch > c.epoch || ev.Kind == EventEpoch:
		c.leave(reasonMoved)
	case ev.Kind == EventMessage:
		c.onRemoteMessage(ev)
	case ev.Kind == EventPersisted && ev.Seq > c.lastSeq:
		// The owner persisted a message this follower never got (the
		// last of a quiet channel shows no other gap): resync.
		c.leave(reasonDetached)
	case ev.Kind == EventPersisted:
		c.onRemotePersisted(ev.Seq)
	case ev.Kind == EventDeleted:
		c.deleted = true // exit ends the subscribers with ErrChannelDeleted
	case ev.Kind == EventEnd:
		if ev.Seq != c.lastSeq {
			c.leave(reasonDetached) // the store has the end
			return
		}
		c.onRemotePersisted(ev.Seq)
		c.closing, c.closeSent = true, true // finished: exit ends the subscribers
	}
}

// onRemoteMessage appends the owner's message ev to a follower and fans it
// out, as onAppend does on the owner.
func (c *channel) onRemoteMessage(ev Event) {
	switch {
	case ev.Seq <= c.lastSeq:
		return // the snapshot had it
	case ev.Seq > c.lastSeq+1:
		c.leave(reasonDetached) // a message is missing
		return
	}
	c.lastSeq = ev.Seq
	m := newMessage(c.binary, ev.Seq, ev.Time, ev.Data)
	cost := msgCost(m)
	c.buf = append(c.buf, m)
	c.bufBytes += cost
	c.h.bufferedMsgs.Add(1)
	c.h.memBytes.Add(cost)
	c.h.makeRoom()
	c.statLast.Store(c.lastSeq)
	for s := range c.subs {
		if !s.push(m) {
			c.detach(s, reasonDetached)
		}
	}
}

// onRemotePersisted moves a follower's persisted watermark to p.
func (c *channel) onRemotePersisted(p int64) {
	if p <= c.p || p > c.lastSeq {
		return
	}
	var freed int64
	for _, m := range c.buf[c.p+1-c.base : p+1-c.base] {
		freed += msgCost(m)
	}
	c.bufBytes -= freed
	c.retained += freed
	c.h.persisted(p-c.p, freed)
	c.p = p
	c.trim()
	c.statPersisted.Store(c.p)
}

// leave makes the actor exit, ending its subscribers for reason: run sees
// finished and calls exit, once the batch in flight, if any, is answered
// (its waiters learn whether it was written). No batch is written after.
func (c *channel) leave(reason int) {
	if c.left == 0 {
		c.left = reason
	}
}

// movedErr answers an append or a close that this actor cannot take: a
// follower's and a fenced owner's are the owner's to take.
func (c *channel) movedErr() error {
	if err := c.role.elsewhere(); err != nil {
		return err
	}
	return ErrMoved
}

// publish hands an event of the channel to the followers on other nodes,
// if the actor owns it, in cluster mode. Called by run.
func (c *channel) publish(kind EventKind, seq, time int64, data []byte) {
	c.role.publish(c, Event{Kind: kind, Channel: c.id, Epoch: c.epoch, Seq: seq, Time: time, Data: data})
}

// logLeave logs why an actor left.
func (c *channel) logLeave() {
	if c.left == reasonDetached {
		c.h.log.Info("follower resyncs", slog.String("channel", c.id), slog.Int64("seq", c.lastSeq))
	}
}
