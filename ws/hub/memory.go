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
	// The hub's retained bytes as of this call, less what it drops: the
	// shared counter is updated once, not once per message.
	hubRetained := h.retainedBytes.Load()
	i := 0
	var dropped int64
	for ; i < len(c.buf) && c.buf[i].Last() <= c.p; i++ {
		kept := c.p - c.buf[i].Seq + 1
		if c.retained <= keepBytes && kept <= int64(keepMsgs) && hubRetained-dropped <= share {
			break
		}
		cost := msgCost(c.buf[i])
		c.retained -= cost
		dropped += cost
	}
	if i == 0 {
		return
	}
	h.retainedBytes.Add(-dropped)
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

// roomWaiter is a generator paused by the hub's memory bound: its channel,
// and the cost of the line that was refused.
type roomWaiter struct {
	c    *channel
	need int64
}

// waitRoom queues c, whose generator the hub's memory bound refused a line
// costing need: c's actor gets sigRoom when released messages leave room
// for it. Waiters are woken in the order they paused,
// and only as many as the room released allows: when thousands of
// generators wait, one persisted batch wakes the few that fit, not all of
// them to find the bound reached again. Called by the actor.
func (h *Hub) waitRoom(c *channel, need int64) {
	h.roomMu.Lock()
	defer h.roomMu.Unlock()
	if !c.roomQueued {
		c.roomQueued = true
		h.roomWait = append(h.roomWait, roomWaiter{c: c, need: need})
		h.awaiting.Store(true)
	}
}

// released wakes, in order, the paused generators that the room under the
// memory bound now fits (see waitRoom).
func (h *Hub) released() {
	if !h.awaiting.Load() {
		return
	}
	h.roomMu.Lock()
	defer h.roomMu.Unlock()
	free := h.cfg.MaxBufferedBytes - h.memBytes.Load()
	i := 0
	for ; i < len(h.roomWait) && h.roomWait[i].need <= free; i++ {
		w := h.roomWait[i]
		free -= w.need
		w.c.roomQueued = false
		w.c.signal(sigRoom)
	}
	n := copy(h.roomWait, h.roomWait[i:])
	clear(h.roomWait[n:])
	h.roomWait = h.roomWait[:n]
	h.awaiting.Store(n > 0)
}
