package hub

import (
	"context"
	"errors"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wire"
)

// This file is what protocols layered over the hub (package ws/streams,
// the Durable Streams adapter) use beyond the channels API: reads of a
// channel's state, appends that commit stream state with their messages,
// and the hub's store and cluster.

// Commit is stream state committed in the same transaction as the
// messages of an append (see Hub.AppendBatch): an idempotent producer's
// state, a Stream-Seq, or both.
type Commit struct {
	// Producer is the producer's new state; nil for none.
	Producer *persist.ProducerState
	// StreamSeq is the request's Stream-Seq; "" for none.
	StreamSeq string
	seq       int64 // the seq of the request's last message; set by the actor
}

// View is a channel's state as one step of its actor saw it: messages
// 1..FromStore are read from the store, Buffered holds the messages after
// max(from, FromStore) up to LastSeq, and Persisted is the durable
// watermark (FromStore ≤ Persisted). An entry of Buffered may be a run of
// messages (wire.NewRun): EachBuffered reads them one at a time.
type View struct {
	Epoch     int64
	Persisted int64
	FromStore int64
	LastSeq   int64
	// Open is false for a closed channel.
	Open bool
	// ContentType is the channel's; "" for text.
	ContentType string
	Buffered    []*wire.Message
}

func (s snapshot) view() View {
	return View{Epoch: s.epoch, Persisted: s.persisted, FromStore: s.fromStore, LastSeq: s.lastSeq, Open: s.open,
		ContentType: s.contentType, Buffered: s.buffered}
}

// Peek returns the state of channel id with the buffered messages after
// from.
func (h *Hub) Peek(ctx context.Context, id string, from int64) (View, error) {
	snap, err := h.peek(ctx, id, from)
	return snap.view(), err
}

// PeekTail returns the state of channel id without messages: only its
// epoch and seqs.
func (h *Hub) PeekTail(ctx context.Context, id string) (View, error) {
	snap, err := h.peekTail(ctx, id)
	return snap.view(), err
}

// Watch returns the state of channel id after from and, if the channel is
// open and from is not past its last seq, registers for what follows: the
// registration's queue gets the live messages, and is closed when the
// subscription ends. Unregister it when done. The registration is nil if
// nothing was registered.
func (h *Hub) Watch(ctx context.Context, id string, from int64) (View, *Registration, error) {
	snap, reg, err := h.subscribe(ctx, id, from, true)
	return snap.view(), reg, err
}

// Queue returns the registration's queue of live messages; the actor
// closes it when the subscription ends.
func (r *Registration) Queue() <-chan *wire.Message { return r.s.queue }

// Ended reports, once the queue is closed, whether the subscription ended
// because the channel closed (durably), and at which seq.
func (r *Registration) Ended() (endSeq int64, ended bool) {
	return r.s.endSeq, r.s.reason == reasonEnded
}

// Unregister ends a registration made by Watch; nil does nothing.
func (h *Hub) Unregister(reg *Registration) { h.unregister(reg) }

// AppendBatch appends msgs (at least one) to channel id in one actor
// step, with commit (if not nil) committed in the same transaction, and
// returns the last one's seq. With waitPersisted it returns once the last
// one (and so all of them, and commit) is durable, or after the
// persist-wait timeout with a *PersistWaitError, as Append does. It runs
// on this node, or fails with a *MovedError.
func (h *Hub) AppendBatch(ctx context.Context, id string, msgs [][]byte, waitPersisted bool, commit *Commit) (int64, error) {
	return h.appendRequest(ctx, id, msgs, waitPersisted, commit)
}

// CreateWith creates channel id as Create does, with record writing its
// row to the store (the adapter's own record, with its stream
// configuration).
func (h *Hub) CreateWith(ctx context.Context, id string, record func(context.Context) (persist.Channel, error)) error {
	_, err := h.create(ctx, id, record, nil, 0)
	return err
}

// ReadRows reads the persisted messages after..upto of channel id, in one
// store query, and checks they are all there.
func (h *Hub) ReadRows(ctx context.Context, id string, after, upto int64) ([]persist.Message, error) {
	return h.readRows(ctx, id, after, upto)
}

// OwnedEpoch returns the epoch of the actor that runs channel id here as
// its owner, taking the channel over if its lease allows; 0 for a closed
// channel, which has no owner; a *MovedError if another node owns it.
func (h *Hub) OwnedEpoch(ctx context.Context, id string) (int64, error) {
	c, err := h.get(ctx, id)
	switch {
	case errors.Is(err, errClosedChannel):
		return 0, nil
	case err != nil:
		return 0, err
	case c.role.elsewhere() != nil:
		return 0, c.role.elsewhere()
	}
	return c.epoch, nil
}

// Config returns the hub's configuration, defaults filled in.
func (h *Hub) Config() Config { return h.cfg }

// Store returns the hub's store, every call bounded by the store timeout.
func (h *Hub) Store() Store { return h.store }

// Cluster returns the hub's link to the other nodes; nil in single-server
// mode.
func (h *Hub) Cluster() Cluster { return h.cluster }

// ForwardTo runs a write on this node if it owns the channel (or can take
// it over): local makes the local attempt, which fails with a *MovedError
// naming the owner otherwise; send then sends the write to node, the
// owner, and returns its answer. It retries while the owner is gone or
// changing, as Append does.
func (h *Hub) ForwardTo(ctx context.Context, local func() (int64, error), send func(node string) (int64, error)) (int64, error) {
	return h.forwardTo(ctx, local, send)
}
