package hub

import (
	"github.com/messages-server/messages/persist"
)

// owner is the role of the actor of a channel this node owns: it takes
// appends and closes, writes its batches, runs the channel's generator and
// publishes its events to the followers on other nodes (cluster mode).
type owner struct{}

func (owner) elsewhere() error { return nil }

// flush hands the unflushed part of the buffer to the persist writer, unless
// a batch is already in flight (per-channel order needs at most one) or
// the actor is leaving.
func (owner) flush(c *channel) {
	if c.inFlight || c.closeSent || c.left != 0 {
		return
	}
	final := c.closing && !c.stopping
	if c.lastSeq == c.p && !final {
		return
	}
	if c.h.writerFull.Load() == c.h.wheel.now()+1 {
		// Another actor found the writer's queue full in this tick of the
		// wheel: do not build a batch to see it refused too.
		c.flushLater()
		return
	}
	unpersisted := c.buf[c.index(c.p+1):]
	msgs := make([]persist.Message, len(unpersisted))
	var ends [][]uint32 // nil unless there is a run
	for i, m := range unpersisted {
		msgs[i] = persist.Message{Seq: m.Seq, Time: m.Time, Data: m.Data}
		if e := m.Ends(); e != nil {
			if ends == nil {
				ends = make([][]uint32, len(unpersisted))
			}
			ends[i] = e
		}
	}
	last := c.lastSeq
	b := &persist.Batch{
		Channel:  c.id,
		Messages: msgs,
		Ends:     ends,
		Close:    final,
		// Every commit belongs to a message of this batch: they are all
		// unpersisted.
		Producers: commitProducers(c.commits),
		StreamSeq: commitStreamSeq(c.commits),
		Epoch:     c.epoch,
		Done: func(err error) {
			c.result = persistResult{last: last, close: final, err: err}
			c.signal(sigPersisted)
		},
	}
	if !c.h.writer.TryEnqueue(b) {
		c.h.writerFull.Store(c.h.wheel.now() + 1)
		c.flushLater()
		return
	}
	c.inFlight = true
	c.closeSent = final
	c.flight, c.commits = c.commits, nil
	c.timerOn = false
}

// publish hands ev to the followers on other nodes, if any.
func (owner) publish(c *channel, ev Event) { c.h.peers.publish(ev) }

func (owner) events() <-chan struct{} { return nil }

func (owner) onEvents(*channel) {}

func (owner) unsubscribed(*channel) {}

func (owner) exit(*channel) {}
