package streams

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/messages-server/messages/ws/durable"
	"github.com/messages-server/messages/ws/hub"
)

// Append implements durable.Backend. In cluster mode an append to a stream
// whose channel another node owns is forwarded to that node, headers and
// all, exactly as Hub.Append forwards: the owner checks the producer and
// the Stream-Seq and commits their new state with the messages, so that
// the idempotence holds through any node.
func (b *Backend) Append(ctx context.Context, name string, a durable.Append) (durable.AppendResult, error) {
	if err := checkAppend(a); err != nil {
		return durable.AppendResult{}, err
	}
	if b.fwd == nil {
		return b.appendHere(ctx, name, a)
	}
	var res durable.AppendResult
	w := Write{Messages: a.Messages, Close: a.Close, StreamSeq: a.StreamSeq, Producer: a.Producer}
	_, err := b.h.ForwardTo(ctx, func() (int64, error) {
		var err error
		res, err = b.appendHere(ctx, name, a)
		return res.Seq, err
	}, func(node string) (int64, error) {
		r, err := b.fwd.ForwardStream(ctx, node, name, w)
		res = durable.AppendResult{Seq: r.Seq, Duplicate: r.Duplicate, ProducerSeq: r.ProducerSeq,
			Info: durable.Info{Tail: durable.Pos{Epoch: r.Epoch, Seq: r.LastSeq}, Closed: r.Closed}}
		if st, serr := b.state(ctx, name); serr == nil {
			b.touch(ctx, name, st)
			res.Info.Config, res.Info.Expires = st.cfg, st.expiry()
		}
		return r.Seq, err
	})
	return res, streamErr(err)
}

// owned returns a *MovedError if another node owns the channel of stream
// name (taking the channel over if its owner's lease has expired), and
// otherwise, with reload, reads the stream's last Stream-Seq and producers
// from the store again: another node may have recorded newer ones while it
// owned the channel (this node may even be a stale owner that does not
// know it yet: its next batch is fenced). What this node's actor accepted
// in its epoch beyond the store (an append answered 504, not committed
// yet) is kept, so that a retry of it is recognised and never appended
// twice (see pending). The caller holds st's write token; a closed stream has no
// owner and is answered here.
func (b *Backend) owned(ctx context.Context, name string, st *streamState, reload bool) error {
	epoch, err := b.h.OwnedEpoch(ctx, name)
	if err != nil {
		return streamErr(err)
	}
	if !reload {
		return nil
	}
	ss, err := b.store.Stream(ctx, name)
	if err != nil {
		return streamErr(hub.StoreErr(err))
	}
	stored := make(map[string]durable.Producer, len(ss.Producers))
	for _, p := range ss.Producers {
		stored[p.ID] = durable.Producer{ID: p.ID, Epoch: p.Epoch, Seq: p.Seq}
	}
	merged := maps.Clone(stored)
	seq := ss.StreamSeq
	if epoch != 0 && st.epoch == epoch {
		// Accepted by this very actor: newer than the store, or equal.
		for id, p := range st.producers {
			if s, ok := stored[id]; !ok || producerAfter(p, s) {
				merged[id] = p
			}
		}
		seq = max(seq, st.streamSeq)
	}
	st.producers, st.streamSeq, st.stored, st.storedSeq, st.epoch = merged, seq, stored, ss.StreamSeq, epoch
	return nil
}

// producerAfter reports whether producer state p is past q.
func producerAfter(p, q durable.Producer) bool {
	return p.Epoch > q.Epoch || (p.Epoch == q.Epoch && p.Seq > q.Seq)
}

// pending reports whether p, a retry of an append this node accepted, is
// not known committed (cluster mode): its first attempt may still be
// fenced, so the retry is neither appended again nor called a duplicate.
func (st *streamState) pending(p durable.Producer) bool {
	if st.stored == nil {
		return false
	}
	s, ok := st.stored[p.ID]
	return !ok || producerAfter(p, s)
}

// errPending answers the retry of an append whose first attempt is
// accepted but not known committed: retry again (504, as the first
// attempt's answer).
var errPending = fmt.Errorf("%w: the first attempt of this request was accepted and is not durable yet; retry later",
	durable.ErrPersistTimeout)

// confirmRefusal returns refusal, a producer's request refused from the
// state in st, once the store confirms that this node's actor still owns
// the channel of stream name at the epoch st is current for. An owner
// that lost the channel without knowing it yet (paused past its lease,
// its renewal not yet run) holds an older record of the producer than
// the new owner's, which makes it refuse a valid request (a seq gap): it
// answers a *MovedError instead, and the request goes to the new owner. A
// record older than the truth never makes a wrong duplicate, and an
// append accepted on it is fenced: only refusals need the check. The
// caller holds st's write token.
func (b *Backend) confirmRefusal(ctx context.Context, name string, st *streamState, refusal error) error {
	rec, err := b.h.Store().Channel(ctx, name)
	if err != nil {
		return streamErr(hub.StoreErr(err))
	}
	self := b.h.Cluster().Node()
	if !rec.Open() || (rec.Owner == self && rec.Epoch == st.epoch) {
		return refusal // a closed stream's state is the store's
	}
	moved := &hub.MovedError{Expires: rec.LeaseExpires}
	if rec.Owner != self {
		moved.Owner = rec.Owner
	}
	return moved
}

// Write is a Durable Streams append, with its idempotence headers,
// forwarded to the owner of its stream's channel: the owner checks and
// records them, in the same transaction as the messages.
type Write struct {
	// Messages are the messages to append; may be empty with Close.
	Messages [][]byte
	// Close closes the stream after the messages.
	Close bool
	// StreamSeq is the request's Stream-Seq, "" without one.
	StreamSeq string
	// Producer is the idempotent producer, nil without one.
	Producer *durable.Producer
}

// Result is the owner's answer to a Write.
type Result struct {
	// Seq is the seq of the last message appended; 0 if none.
	Seq int64
	// Epoch and LastSeq are the stream's tail after the write.
	Epoch, LastSeq int64
	// Closed is set if the stream is closed.
	Closed bool
	// Duplicate is set for a producer's retry: nothing was appended.
	Duplicate bool
	// ProducerSeq is the producer's highest accepted seq in its epoch.
	ProducerSeq int64
}

// nodes is what the backend does about the other nodes where the two
// modes differ: nothing alone (alone.go); in cluster mode (clustered),
// through the store, which other nodes write too, and the channel's owner.
type nodes interface {
	// recordAccess records an access to stream name in the store for
	// the other nodes, unless the last record is younger than grace.
	recordAccess(ctx context.Context, name string, st *streamState, now time.Time, grace time.Duration)
	// expired decides whether stream name, whose sliding TTL passed in
	// this node's view, has expired for every node.
	expired(ctx context.Context, name string, st *streamState) (bool, error)
	// owned checks that this node owns the stream's channel before a
	// write (see Backend.owned).
	owned(ctx context.Context, name string, st *streamState, reload bool) error
	// confirmRefusal returns refusal once this node is known to hold the
	// producer's current state (see Backend.confirmRefusal).
	confirmRefusal(ctx context.Context, name string, st *streamState, refusal error) error
}

// clustered is the nodes of a backend in cluster mode.
type clustered struct{ b *Backend }

func (c clustered) recordAccess(ctx context.Context, name string, st *streamState, now time.Time, grace time.Duration) {
	if now.UnixNano()-st.recorded.Load() < int64(grace) {
		return
	}
	if err := c.b.store.TouchStream(ctx, name); err == nil {
		st.recorded.Store(now.UnixNano())
	}
}

func (c clustered) expired(ctx context.Context, name string, st *streamState) (bool, error) {
	return c.b.expired(ctx, name, st)
}

func (c clustered) owned(ctx context.Context, name string, st *streamState, reload bool) error {
	return c.b.owned(ctx, name, st, reload)
}

func (c clustered) confirmRefusal(ctx context.Context, name string, st *streamState, refusal error) error {
	return c.b.confirmRefusal(ctx, name, st, refusal)
}

// Forwarder sends the Durable Streams appends of a stream whose channel
// another node owns to that node (cluster mode). The hub's Cluster
// implements it if it carries Durable Streams, as package ws/cluster's
// does.
type Forwarder interface {
	// ForwardStream sends w, an append (or close) of stream id, to node,
	// the owner of its channel, which runs it with AppendLocal; errors as
	// hub.Cluster's Forward, and the owner's Durable Streams errors.
	ForwardStream(ctx context.Context, node, id string, w Write) (Result, error)
}

// AppendLocal runs a Durable Streams append forwarded by another node,
// without forwarding it again: it fails with a *hub.MovedError if this
// node does not own the stream's channel. The cluster layer serves
// forwarded stream appends with it.
func (b *Backend) AppendLocal(ctx context.Context, id string, w Write) (Result, error) {
	res, err := b.appendHere(ctx, id, durable.Append{Messages: w.Messages, Close: w.Close,
		StreamSeq: w.StreamSeq, Producer: w.Producer})
	return Result{Seq: res.Seq, Epoch: res.Info.Tail.Epoch, LastSeq: res.Info.Tail.Seq,
		Closed: res.Info.Closed, Duplicate: res.Duplicate, ProducerSeq: res.ProducerSeq}, err
}
