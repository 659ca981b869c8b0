package hub

import (
	"log/slog"
	"time"
)

// onIdle runs every IdleEvict. An actor that took no request since the last
// run, and that has no subscriber, no generator and nothing unpersisted,
// is evicted: it exits, and the store holds the whole channel. So a channel
// leaves memory between one and two IdleEvict after its last request.
func (c *channel) onIdle(idle *time.Timer) {
	if !c.active && c.evictable() {
		c.evicted = true
		c.h.metrics.evicted.Inc()
		c.h.log.Debug("idle channel evicted", slog.String("channel", c.id), slog.Int64("seq", c.lastSeq))
		return
	}
	c.active = false
	idle.Reset(c.h.cfg.IdleEvict)
}

// evictable reports whether the store holds all of the channel: everything
// is persisted and nothing but the store needs the actor. A follower is
// never evicted (it would come back as an owner); it leaves with its last
// subscriber.
func (c *channel) evictable() bool {
	return c.role.elsewhere() == nil && len(c.subs) == 0 && c.gen == nil && c.lastSeq == c.p && !c.inFlight &&
		len(c.waiters) == 0 && !c.closing && !c.stopping
}

// reclaim reports whether channel id was evicted whole at epoch, and
// forgets it. Such a channel is loaded as it is: nothing was lost, so it
// needs no new epoch.
func (h *Hub) reclaim(id string, epoch int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.evicted[id]
	delete(h.evicted, id)
	return ok && e == epoch
}
