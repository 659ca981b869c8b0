package hub

import (
	"context"
	"log/slog"
	"time"
)

// Values of the by label of messages_channels_deleted_total.
const (
	deletedByRequest   = "request"   // DELETE /channels/{id}
	deletedByRetention = "retention" // closed longer ago than the retention
)

// RetentionConfig configures the background deletion of closed channels.
// The zero value keeps every channel forever.
type RetentionConfig struct {
	// After is how long a channel is kept after it was closed; then it is
	// deleted with its history. Zero keeps channels forever. Open channels
	// are never deleted by retention.
	After time.Duration
	// Batch is how many channels one transaction deletes at most.
	// Default 100.
	Batch int
	// Pause is the wait between two batches while more channels are due:
	// retention uses one store connection at a time and yields it between
	// batches. Default 200ms.
	Pause time.Duration
	// Interval is how often retention looks for due channels when the last
	// look found no more. Default: After/10, between 1s and 1 minute.
	Interval time.Duration
}

func (c *RetentionConfig) setDefaults() {
	if c.Batch <= 0 {
		c.Batch = 100
	}
	if c.Pause <= 0 {
		c.Pause = 200 * time.Millisecond
	}
	if c.Interval <= 0 {
		c.Interval = min(max(c.After/10, time.Second), time.Minute)
	}
}

// Delete deletes channel id and its history. A running actor of the
// channel is stopped once the delete is committed: its subscribers end
// with ErrChannelDeleted, and so do the appends and closes it had not
// answered yet. It returns ErrNotFound for an unknown id. If the store
// fails, nothing is deleted and the channel goes on.
//
// The id may then be created again: the new channel's epoch is above every
// epoch the deleted one had, so that a client resuming with the old epoch
// is told to start again.
//
// In cluster mode a channel that another node owns is deleted there.
func (h *Hub) Delete(ctx context.Context, id string) error {
	if done, err := h.peers.deleteElsewhere(ctx, id); done {
		return err
	}
	return h.DeleteLocal(ctx, id)
}

// DeleteLocal is Delete without forwarding: it deletes the channel from
// the store and stops the actor that runs here, if any. The cluster layer
// serves forwarded deletes with it.
func (h *Hub) DeleteLocal(ctx context.Context, id string) error {
	release, err := h.claim(ctx, id)
	if err != nil {
		return err
	}
	// No actor for id starts while the claim is held; one that runs goes
	// on until the delete is committed, so that a failed delete changes
	// nothing. A batch it writes meanwhile is stored and deleted, or, once
	// the row is gone, refused as not found: deleting tells it which.
	c, _ := h.owner(id)
	if c != nil {
		c.deleting.Store(true)
	}
	if err := h.store.DeleteChannel(ctx, id); err != nil {
		if c != nil {
			c.deleting.Store(false)
		}
		release()
		return StoreErr(err)
	}
	h.InvalidateHistory(id)
	h.metrics.deleted.With(deletedByRequest).Inc()
	h.log.Info("channel deleted", slog.String("channel", id))
	if c == nil {
		// No actor here to tell the other nodes: their followers and
		// cached history of the channel go.
		h.peers.publish(Event{Kind: EventDeleted, Channel: id})
		release()
		return nil
	}
	// The actor never blocks, so it takes the request soon; waiting for
	// its exit means that its streams are ended when Delete returns.
	_, _ = c.request(context.Background(), deleteReq{})
	<-c.done
	if !c.inFlight || !h.hold(c, release) {
		release()
	}
	return nil
}

// hold keeps id claimed (see Delete) until the writer is done with the
// last batch of c, a deleted channel's actor that exited with it in
// flight: a channel created again under the id would otherwise take that
// batch's messages as its own. It reports false if the hub is stopping.
func (h *Hub) hold(c *channel, release func()) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return false
	}
	h.wg.Add(1) // under mu, before Stop's Wait
	go func() {
		defer h.wg.Done()
		defer release()
		select {
		case <-c.persisted: // the batch's Done: refused as not found, or deleted with the rest
		case <-h.stop:
		}
	}()
	return true
}

// claim takes id's loading slot, so that neither get nor Create starts an
// actor for id until release is called.
func (h *Hub) claim(ctx context.Context, id string) (release func(), err error) {
	for {
		h.mu.Lock()
		if h.stopped {
			h.mu.Unlock()
			return nil, ErrShuttingDown
		}
		wait := h.loading[id]
		if wait == nil {
			mine := make(chan struct{})
			h.loading[id] = mine
			h.mu.Unlock()
			return func() {
				h.mu.Lock()
				delete(h.loading, id)
				h.mu.Unlock()
				close(mine)
			}, nil
		}
		h.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// retain deletes the channels closed longer ago than the retention, a
// batch at a time, until the hub stops. It runs on its own goroutine and
// uses one store connection at a time; appends never wait for it.
func (h *Hub) retain() {
	defer h.wg.Done()
	cfg := h.cfg.Retention
	t := time.NewTimer(0)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		wait := cfg.Interval
		ids, err := h.store.DeleteClosedBefore(h.ctx, time.Now().Add(-cfg.After), cfg.Batch)
		switch {
		case h.ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				h.log.Warn("retention: deleting closed channels failed, retrying", slog.Any("err", err))
			}
			failing = true
		default:
			if failing {
				h.log.Info("retention: deleting closed channels again")
			}
			failing = false
			for _, id := range ids {
				h.InvalidateHistory(id)
			}
			if len(ids) > 0 {
				h.metrics.deleted.With(deletedByRetention).Add(float64(len(ids)))
				h.log.Debug("retention: closed channels deleted", slog.Int("channels", len(ids)))
			}
			if len(ids) == cfg.Batch {
				wait = cfg.Pause // more are due
			}
		}
		t.Reset(wait)
	}
}
