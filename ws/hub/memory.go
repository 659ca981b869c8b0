package hub

import "github.com/messages-server/messages/ws/wire"

// MessageOverhead is the fixed memory, in bytes, that a message held by a
// channel costs besides the capacities of its data and encoded frame: the
// wire.Message struct, its slot in the buffer (whose backing array grows by
// doubling), and its persist.Message in the batch in flight. Measured by
// TestMessageCost at 127 to 136 bytes for data of 1 byte to 64 KiB (see
// docs/RELIABILITY.md); the constant leaves a margin.
const MessageOverhead = 160

// msgCost is what m costs while a channel holds it.
func msgCost(m *wire.Message) int64 { return m.MemSize() + MessageOverhead }

// reserve accounts for msgs more unpersisted messages costing cost in
// all, or reports false if a bound would be passed: the channel's message
// count or memory, or the hub's memory. All of them or none: a request's
// messages are never split. To make room it first gives up the channel's
// own retained messages, which are persisted. A request that finds
// nothing unpersisted in the channel passes the channel's own bounds (but
// never the hub's): one request, such as a large JSON batch, is never
// refused for good when the hub has room for it. Called by the actor.
func (c *channel) reserve(msgs, cost int64) bool {
	h := c.h
	alone := c.lastSeq == c.p
	if !alone && c.lastSeq-c.p+msgs > int64(h.cfg.MaxBufferedPerChannel) {
		return false
	}
	if c.bufBytes+c.retained+cost > h.cfg.MaxChannelBytes || h.memBytes.Load()+cost > h.cfg.MaxBufferedBytes {
		c.trimTo(0, 0)
		if !alone && c.bufBytes+cost > h.cfg.MaxChannelBytes {
			return false
		}
	}
	if h.memBytes.Add(cost) > h.cfg.MaxBufferedBytes {
		h.memBytes.Add(-cost)
		return false
	}
	h.bufferedMsgs.Add(msgs)
	h.makeRoom()
	return true
}

// makeRoom has the history page cache give up pages until it and the
// messages fit in MaxBufferedBytes again: accepted messages come first.
func (h *Hub) makeRoom() {
	if h.cache != nil {
		h.cache.yield()
	}
}

// trim drops the oldest persisted messages past the retention bounds. The
// rest stay in memory so that recent catch-ups and resumes need no store
// read; unpersisted messages are never dropped.
func (c *channel) trim() { c.trimTo(c.h.cfg.RetainMessages, c.h.cfg.RetainBytes) }

// trimTo drops the oldest persisted messages until at most keepMsgs of
// them, costing at most keepBytes, are left, and the hub's retained
// messages cost at most an eighth of its bound.
func (c *channel) trimTo(keepMsgs int, keepBytes int64) {
	h := c.h
	share := h.cfg.MaxBufferedBytes / 8
	i := 0
	var dropped int64
	for ; i < len(c.buf) && c.buf[i].Last() <= c.p; i++ {
		kept := c.p - c.buf[i].Seq + 1
		if c.retained <= keepBytes && kept <= int64(keepMsgs) && h.retainedBytes.Load() <= share {
			break
		}
		cost := msgCost(c.buf[i])
		c.retained -= cost
		dropped += cost
		h.retainedBytes.Add(-cost)
	}
	if i == 0 {
		return
	}
	h.memBytes.Add(-dropped)
	h.released()
	clear(c.buf[:i])
	c.buf = c.buf[i:]
	c.base = c.lastSeq + 1
	if len(c.buf) == 0 {
		c.buf = nil
	} else {
		c.base = c.buf[0].Seq
	}
}

// persisted accounts for msgs messages costing cost that became durable:
// they are retained now, until trimmed.
func (h *Hub) persisted(msgs, cost int64) {
	h.bufferedMsgs.Add(-msgs)
	h.retainedBytes.Add(cost)
	h.released()
}

// forget accounts for the messages of an actor that exits.
func (h *Hub) forget(c *channel) {
	h.bufferedMsgs.Add(-(c.lastSeq - c.p))
	h.memBytes.Add(-(c.bufBytes + c.retained))
	h.retainedBytes.Add(-c.retained)
	h.released()
}

// roomFreed returns a channel closed the next time messages are released
// (persisted or dropped): a refused producer may then try again.
func (h *Hub) roomFreed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.room == nil {
		h.room = make(chan struct{})
		h.awaiting.Store(true)
	}
	return h.room
}

// released wakes the producers waiting on roomFreed.
func (h *Hub) released() {
	if !h.awaiting.Load() {
		return
	}
	h.mu.Lock()
	if h.room != nil {
		close(h.room)
		h.room = nil
		h.awaiting.Store(false)
	}
	h.mu.Unlock()
}
