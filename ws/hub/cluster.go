package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/messages-server/messages/internal/backoff"
	"github.com/messages-server/messages/internal/metric"
	"github.com/messages-server/messages/ws/wire"
)

// Cluster is the hub's link to the other nodes of a cluster; package
// ws/cluster implements it over NATS. Config.Cluster is nil in
// single-server mode, and then the hub never calls it. Its methods must be
// safe for concurrent use.
type Cluster interface {
	// Forward sends w to node, the owner of w's channel, and returns the
	// owner's answer as its Hub.Append or Hub.Close would. It returns an
	// error wrapping ErrNoOwner when no process of that node answers (it
	// is gone), and a *MovedError when the node does not own the channel.
	Forward(ctx context.Context, node string, w Write) (int64, error)
	// Publish hands ev, about a channel this node owns, to the followers
	// of the channel on other nodes. It is called by the channel's actor,
	// in order, and must not block.
	Publish(ev Event)
	// Follow subscribes to the events node publishes about channel id,
	// handing each to deliver (which does not block), and then asks node
	// for a snapshot of the channel, which every event delivered after it
	// follows or overlaps. stop ends the subscription. It returns an error
	// wrapping ErrNoOwner when node does not answer.
	Follow(ctx context.Context, node, id string, deliver func(Event)) (snap Snapshot, stop func(), err error)
	// Ping asks node for the epoch at which it runs channel id as its
	// owner. It returns a *MovedError if node does not own it, and an
	// error wrapping ErrNoOwner if node does not answer.
	Ping(ctx context.Context, node, id string) (epoch int64, err error)
	// Lease is how long an owner's lease holds without renewal: how long
	// a node may have to wait before it can take over the channel of a
	// node that is gone.
	Lease() time.Duration
	// Node returns this node's id.
	Node() string
	// Connected reports whether this node reaches the others. A node that
	// does not cannot prove that it owns anything: it neither creates nor
	// takes over a channel until it does.
	Connected() bool
}

// ErrCutOff means that this node does not reach the other nodes of its
// cluster (NATS is unreachable), so it does not take channels: retry
// later, or through another node.
var ErrCutOff = errors.New("this node is cut off from the cluster (NATS unreachable): retry later or through another node")

// clustered is the peers of a hub in cluster mode: the other nodes,
// through its Cluster.
type clustered struct {
	h *Hub
	c Cluster
}

// canOwn returns ErrCutOff if this node does not reach its cluster.
func (p clustered) canOwn() error {
	if !p.c.Connected() {
		return ErrCutOff
	}
	return nil
}

func (p clustered) publish(ev Event) { p.c.Publish(ev) }

func (p clustered) forward(ctx context.Context, local func() (int64, error), send func(node string) (int64, error)) (int64, error) {
	return p.h.forwardTo(ctx, local, send)
}

// tookOver has the followers of the previous epoch, on other nodes,
// resync.
func (p clustered) tookOver(id string, epoch int64) {
	p.h.metrics.takeovers.Inc()
	p.c.Publish(Event{Kind: EventEpoch, Channel: id, Epoch: epoch})
}

// deletesElsewhere: another node may delete a channel while it cannot
// reach this one (the row of an open channel goes only by a delete).
func (p clustered) deletesElsewhere() bool { return true }

func (p clustered) follow(ctx context.Context, id string, moved *MovedError) (bool, error) {
	return true, p.h.follow(ctx, id, moved)
}

// stillClosed reads the store's record: the cache is trusted only if it
// still names the same closed epoch.
func (p clustered) stillClosed(ctx context.Context, id string, epoch, last int64) bool {
	rec, err := p.h.store.Channel(ctx, id)
	return err == nil && !rec.Open() && rec.Epoch == epoch && rec.LastSeq == last
}

// Write is an append, a close or a delete forwarded to the owner of its
// channel.
type Write struct {
	// Close is set for a close; Delete for a delete; neither for an
	// append.
	Close, Delete bool
	// Channel is the channel id.
	Channel string
	// Data is the message of an append.
	Data []byte
	// Wait asks an append to answer once the message is persisted.
	Wait bool
}

// EventKind says what an Event reports.
type EventKind uint8

// The kinds of Event.
const (
	// EventMessage is a message appended at Seq, with Time and Data.
	EventMessage EventKind = iota + 1
	// EventPersisted says that messages up to Seq are durable.
	EventPersisted
	// EventEnd says that the channel closed at Seq, durably.
	EventEnd
	// EventEpoch says that a node took the channel over at Epoch.
	EventEpoch
	// EventDeleted says that the channel was deleted.
	EventDeleted
)

// Event is what an owner publishes about one of its channels, for the
// followers of the channel on other nodes.
type Event struct {
	Kind    EventKind
	Channel string
	// Epoch is the epoch of the owner's actor.
	Epoch int64
	// Seq is the message's seq, the persisted watermark or the last seq,
	// according to Kind.
	Seq  int64
	Time int64 // the append time, Unix microseconds (EventMessage)
	Data []byte
}

// Snapshot is an owner's state of a channel, taken in one step of its
// actor: the epoch, the persisted watermark, the last seq, and the
// buffered messages Persisted+1..LastSeq (those the store does not have).
type Snapshot struct {
	Epoch     int64
	Persisted int64
	LastSeq   int64
	Messages  []*wire.Message
}

// ErrNoOwner means that the node that owns a channel does not answer:
// it is gone, or cut off. Once its lease expires another node takes the
// channel over.
var ErrNoOwner = errors.New("the node that owns the channel does not answer")

// ErrUncertain means that a write forwarded to the owner of its channel
// got no answer in time: the owner may or may not have applied it.
var ErrUncertain = errors.New("the node that owns the channel did not answer in time; the write may or may not have been applied")

// ErrTooLarge means that a write is larger than the link between the
// nodes carries (NATS's max_payload), so it cannot be forwarded to the
// owner of its channel: nothing was applied. Write it through the owner,
// or in smaller parts.
var ErrTooLarge = errors.New("the write is too large to forward to the node that owns the channel")

// MovedError is an ErrMoved that names the node that owns the channel.
type MovedError struct {
	// Owner is the node that owns the channel, "" if not known.
	Owner string
	// Expires is when the owner's lease expires unless renewed; zero if
	// not known.
	Expires time.Time
}

// Error names the owner.
func (e *MovedError) Error() string {
	return fmt.Sprintf("%v: owned by node %q", ErrMoved, e.Owner)
}

// Is reports whether target is ErrMoved.
func (e *MovedError) Is(target error) bool { return target == ErrMoved }

// addCluster makes the hub's cluster metrics in m with r.
func (m *Metrics) addCluster(r metric.Registry) {
	counter := func(subsystem, name, help string) metric.Counter {
		return r.Counter(metric.Opts{Namespace: "messages", Subsystem: subsystem, Name: name, Help: help})
	}
	m.fenced = counter("", "fenced_channels_total",
		"Channel actors stopped because another node took their channel over (a batch was fenced).")
	m.forwards = counter("cluster", "forwards_total",
		"Appends, closes and deletes forwarded to the node that owns their channel.")
	m.takeovers = counter("cluster", "takeovers_total",
		"Channels this node took over in cluster mode (from a node that is gone, or after a restart).")
	m.lagWaits = counter("cluster", "follower_waits_total",
		"Reads whose from was past this node's follower of the channel, which waited for it to catch up.")
}

// maxForwardPoll bounds the pause between two looks at a channel whose
// owner does not answer.
const maxForwardPoll = 250 * time.Millisecond

// forwardPatience bounds how long a write waits for the owner of its
// channel to answer or for another node to take the channel over.
const forwardPatience = 15 * time.Second

// forward runs a write on this node if it owns the channel (or can take it
// over), else forwards it to the owner; local makes the local attempt.
// Alone it is local.
func (h *Hub) forward(ctx context.Context, w Write, local func() (int64, error)) (int64, error) {
	return h.peers.forward(ctx, local, func(node string) (int64, error) {
		return h.cluster.Forward(ctx, node, w)
	})
}

// forwardTo is forward with the remote call given: send sends the write to
// node, the owner, and returns its answer.
func (h *Hub) forwardTo(ctx context.Context, local func() (int64, error), send func(node string) (int64, error)) (int64, error) {
	deadline := time.Now().Add(forwardPatience)
	pace := backoff.Exponential{Min: 10 * time.Millisecond, Max: maxForwardPoll}
	for {
		seq, err := local()
		moved, ok := errors.AsType[*MovedError](err)
		if !ok || seq != 0 {
			// seq != 0: accepted here, then fenced before it was durable:
			// never sent again (the error says it is not persisted).
			if seq != 0 || !errors.Is(err, ErrMoved) {
				return seq, err
			}
			// Fenced: look again, the store names the new owner.
		} else if moved.Owner != "" {
			h.metrics.forwards.Inc()
			seq, err = send(moved.Owner)
			if !errors.Is(err, ErrNoOwner) && !errors.Is(err, ErrMoved) {
				return seq, err
			}
		}
		// The owner is gone, stopping or changed: look again soon. Its
		// lease may expire at the time the store said, or much earlier: a
		// stopping node releases its leases once its channels are
		// flushed, and the write is then served at once.
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%w: %w", ErrNoOwner, err)
		}
		wait := pace.Next()
		if ok && !moved.Expires.IsZero() {
			wait = max(wait, min(time.Until(moved.Expires), maxForwardPoll))
		}
		if !backoff.Sleep(ctx, wait) {
			return 0, ctx.Err()
		}
	}
}

// deleteElsewhere forwards the delete of channel id to the node that owns
// it and reports whether it did. A channel no other node holds a live
// lease on, or whose owner does not answer, is deleted here.
func (p clustered) deleteElsewhere(ctx context.Context, id string) (bool, error) {
	h := p.h
	rec, err := h.store.Channel(ctx, id)
	if err != nil || rec.Owner == "" || rec.Owner == p.c.Node() || !rec.Open() {
		return false, nil // the local delete reports the error
	}
	h.metrics.forwards.Inc()
	_, err = p.c.Forward(ctx, rec.Owner, Write{Delete: true, Channel: id})
	if errors.Is(err, ErrNoOwner) || errors.Is(err, ErrMoved) {
		return false, nil // gone, or not the owner any more: the store decides
	}
	return true, err
}

// OwnerSnapshot returns a snapshot of channel id, with only the messages
// not yet persisted, if this node owns the channel (taking it over if its
// lease allows); else a *MovedError. The cluster layer answers a new
// follower on another node with it.
func (h *Hub) OwnerSnapshot(ctx context.Context, id string) (Snapshot, error) {
	req := &subscribeReq{result: make(chan snapshot, 1)}
	snap, c, err := call(ctx, h, id, func() any { return req }, req.result)
	switch {
	case errors.Is(err, errClosedChannel):
		return Snapshot{}, ErrChannelClosed
	case err != nil:
		return Snapshot{}, err
	case c.role.elsewhere() != nil:
		return Snapshot{}, c.role.elsewhere()
	case snap.stopping:
		return Snapshot{}, ErrShuttingDown
	}
	// The follower reads what is persisted from the store, as the owner's
	// subscribers do: send only the rest, which keeps snapshots small.
	// A run goes as its messages: the snapshot's codec and the follower
	// take one message at a time.
	var msgs []*wire.Message
	for _, m := range snap.buffered {
		for i := max(0, int(snap.persisted-m.Seq+1)); i < m.Len(); i++ {
			msgs = append(msgs, m.Slice(i, i+1))
		}
	}
	return Snapshot{Epoch: snap.epoch, Persisted: snap.persisted, LastSeq: snap.lastSeq, Messages: msgs}, nil
}

// OwnerEpoch returns the epoch of channel id if this node owns it (an
// actor evicted while idle comes back at the same epoch), else a
// *MovedError. It answers a follower's ping.
func (h *Hub) OwnerEpoch(ctx context.Context, id string) (int64, error) {
	c, err := h.get(ctx, id)
	switch {
	case errors.Is(err, errClosedChannel):
		return 0, &MovedError{} // its readers find the end in the store
	case err != nil:
		return 0, err
	case c.role.elsewhere() != nil:
		return 0, c.role.elsewhere()
	}
	return c.epoch, nil
}

// actor returns the actor of id running in this process, or nil.
func (h *Hub) actor(id string) *channel {
	c, _ := h.owner(id)
	return c
}

// Owned returns the channels this node runs as their owner, with their
// epochs.
func (h *Hub) Owned() map[string]int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int64, len(h.channels))
	for id, c := range h.channels {
		if c.role.elsewhere() == nil {
			out[id] = c.epoch
		}
	}
	return out
}

// Followers returns how many channels this node follows.
func (h *Hub) Followers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.channels {
		if c.role.elsewhere() != nil {
			n++
		}
	}
	return n
}

// Relinquish stops the actor of channel id if it runs here as the owner
// at epoch: this node learnt that it lost the channel, or cannot prove
// that it still holds it (its lease was not renewed). The actor refuses
// new appends at once, but first writes what it had accepted: the epoch
// fence commits the batch if no other node took the channel over, and
// refuses it as a whole otherwise. Then its subscribers resume elsewhere,
// as after a fenced batch.
func (h *Hub) Relinquish(id string, epoch int64) {
	c := h.actor(id)
	if c == nil || c.epoch != epoch || c.role.elsewhere() != nil {
		return
	}
	select {
	case c.remote <- remoteEvent{leave: reasonMoved, letGo: true}:
	case <-c.done:
	}
}

// Adopt takes channel id over if no node holds its lease (its owner is
// gone) and it is open, and starts its actor and its generator here.
func (h *Hub) Adopt(ctx context.Context, id string) error {
	_, err := h.get(ctx, id)
	if errors.Is(err, errClosedChannel) || errors.Is(err, ErrMoved) {
		return nil
	}
	return err
}
