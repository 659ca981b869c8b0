package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/streams"
)

// maxServing bounds the remote calls a node serves at once; past it a
// call is answered at once with "overloaded".
const maxServing = 1024

// serve answers one remote call, on its own goroutine: an append that
// waits for persistence must not hold up the others.
func (n *Node) serve(msg *nats.Msg) {
	req, err := decodeRequest(msg)
	if err != nil {
		n.respond(msg, reply{Error: &replyError{Code: codeBadRequest, Message: "malformed request"}})
		return
	}
	if n.m.serving.Load() >= maxServing {
		n.respond(msg, errorReply(hub.ErrOverloaded))
		return
	}
	n.m.serving.Add(1)
	n.wg.Go(func() {
		defer n.m.serving.Add(-1)
		n.m.served.WithLabelValues(req.Op).Inc()
		n.respond(msg, n.handle(req))
	})
}

// handle runs req on this node's hub, never forwarding it again.
func (n *Node) handle(req request) reply {
	h := n.started()
	timeout := n.cfg.RequestTimeout
	if req.Wait {
		// The asking node waits this long too: the hub's persist-wait
		// timeout ends the wait first, with a 504 and the seq, as on a
		// single server.
		timeout += n.cfg.WaitTimeout
	}
	ctx, cancel := context.WithTimeout(n.ctx, timeout)
	defer cancel()
	var (
		r   reply
		err error
	)
	switch req.Op {
	case opAppend:
		r.Seq, err = h.AppendLocal(ctx, req.Channel, req.Data, req.Wait)
	case opStream:
		if req.Stream == nil {
			return reply{Error: &replyError{Code: codeBadRequest, Message: "a stream append without its fields"}}
		}
		r, err = n.streamAppend(req)
	case opClose:
		r.Seq, err = h.CloseLocal(ctx, req.Channel)
	case opDelete:
		err = h.DeleteLocal(ctx, req.Channel)
	case opSnapshot:
		var snap hub.Snapshot
		if snap, err = h.OwnerSnapshot(ctx, req.Channel); err == nil {
			r = snapshotReply(snap)
		}
	case opPing:
		r.Epoch, err = h.OwnerEpoch(ctx, req.Channel)
	default:
		return reply{Error: &replyError{Code: codeBadRequest, Message: "unknown operation " + req.Op}}
	}
	if n.ctx.Err() != nil && err != nil {
		err = hub.ErrShuttingDown
	}
	if err != nil {
		e := errorReply(err)
		// An append accepted, then not confirmed persisted; the tail of a
		// stream append.
		e.Seq, e.Epoch, e.Last, e.Closed = r.Seq, r.Epoch, r.Last, r.Closed
		return e
	}
	return r
}

// streamAppend runs a forwarded Durable Streams append on this node's
// hub. It waits until the append is persisted (as the owner's stream
// appends with producer headers do), so it has the longer deadline of an
// append that waits.
func (n *Node) streamAppend(req request) (reply, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout+n.cfg.WaitTimeout)
	defer cancel()
	s := req.Stream
	b := n.durable()
	if b == nil {
		return reply{}, &hub.BadRequestError{Msg: "Durable Streams are not enabled on the owner of this stream"}
	}
	res, err := b.AppendLocal(ctx, req.Channel, streams.Write{Messages: s.Messages,
		Close: s.Close, StreamSeq: s.StreamSeq, Producer: s.Producer})
	return reply{Seq: res.Seq, Epoch: res.Epoch, Last: res.LastSeq, Closed: res.Closed,
		Duplicate: res.Duplicate, ProducerSeq: res.ProducerSeq}, err
}

// durable returns the Durable Streams backend ServeStreams was given, or
// nil.
func (n *Node) durable() *streams.Backend {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.streams
}

// started returns the hub Start was given, or nil before Start.
func (n *Node) started() *hub.Hub {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hub
}

// respond sends r as the answer to msg. A reply larger than NATS takes (a
// snapshot of a channel with a large backlog not yet persisted) is
// answered "overloaded" instead: the follower's subscriber retries, and
// gets a smaller snapshot once the backlog is durable.
func (n *Node) respond(msg *nats.Msg, r reply) {
	b := marshal(r)
	if int64(len(b)) > n.nc.MaxPayload() {
		b = marshal(reply{Error: &replyError{Code: codeOverloaded,
			Message: fmt.Sprintf("the answer (%d bytes) is larger than NATS takes (%d bytes); retry later", len(b), n.nc.MaxPayload())}})
	}
	if err := msg.Respond(b); err != nil {
		n.log.Warn("cluster: cannot answer a remote call", slog.Any("err", err))
	}
}

// leases renews this node's leases every third of the lease time while
// NATS is reachable, stops the channels another node took over, and takes
// over the generators of nodes that are gone. A node cut from NATS stops
// renewing, so that the others can take its channels over once its leases
// expire; its batches are then fenced.
func (n *Node) leases() {
	t := time.NewTicker(n.lease / 3)
	defer t.Stop()
	n.renew()
	for {
		select {
		case <-t.C:
		case <-n.ctx.Done():
			return
		}
		n.renew()
		n.adoptOrphans()
	}
}

// renew renews this node's leases in one statement and relinquishes the
// channels it runs but no longer owns.
func (n *Node) renew() {
	if !n.nc.IsConnected() {
		n.m.renewals.WithLabelValues("skipped").Inc()
		if !n.renewed.IsZero() && time.Since(n.renewed) > n.lease {
			// The leases have expired: other nodes may own these channels
			// now, and this node cannot tell. Stop them; their subscribers
			// resume, here once NATS is back or through another node.
			h := n.started()
			for id, epoch := range h.Owned() {
				n.log.Warn("cluster: cut off from NATS past the lease, stopping a channel", slog.String("channel", id))
				h.Relinquish(id, epoch)
			}
		}
		return
	}
	h := n.started()
	// What runs here is read first: a channel taken over after this is in
	// the renewed set, never wrongly relinquished.
	running := h.Owned()
	ctx, cancel := context.WithTimeout(n.ctx, n.lease/2)
	defer cancel()
	ids, err := n.cfg.Store.RenewLeases(ctx)
	if err != nil {
		n.m.renewals.WithLabelValues("failed").Inc()
		if n.ctx.Err() == nil {
			n.log.Warn("cluster: lease renewal failed", slog.Any("err", err))
		}
		return
	}
	n.m.renewals.WithLabelValues("ok").Inc()
	n.renewed = time.Now()
	for _, id := range ids {
		delete(running, id)
	}
	for id, epoch := range running {
		// Not renewed: closed meanwhile, or taken over by another node.
		rec, err := n.cfg.Store.Channel(ctx, id)
		if err != nil || !rec.Open() || (rec.Owner == n.node && rec.Epoch == epoch) {
			continue
		}
		n.log.Warn("cluster: channel lost to another node", slog.String("channel", id),
			slog.String("owner", rec.Owner), slog.Int64("epoch", rec.Epoch))
		h.Relinquish(id, epoch)
	}
}

// adoptOrphans takes over, up to a page at a time, the open channels with
// a generator whose owner's lease expired: their generators go on here,
// from the durable point. Nodes race for them; the database picks one.
// The page's take-overs run concurrently, so that the store writes them
// together, a few transactions for the page instead of one each.
func (n *Node) adoptOrphans() {
	if !n.nc.IsConnected() {
		return
	}
	h := n.started()
	ctx, cancel := context.WithTimeout(n.ctx, n.lease)
	defer cancel()
	ids, err := n.cfg.Store.Orphans(ctx, 100)
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			if err := h.Adopt(ctx, id); err != nil && n.ctx.Err() == nil {
				n.log.Warn("cluster: cannot take an orphan channel over", slog.String("channel", id), slog.Any("err", err))
			}
		})
	}
	wg.Wait()
}
