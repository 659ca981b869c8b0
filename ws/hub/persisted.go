package hub

import (
	"errors"
	"log/slog"
	"slices"

	"github.com/messages-server/messages/persist"
)

// What an actor does with the persist writer: flush hands it the unflushed
// messages as one batch, and onPersisted takes the batch's outcome.

// flush hands the unflushed part of the buffer to the persist writer, if
// the actor owns the channel (see owner.flush).
func (c *channel) flush() { c.role.flush(c) }

// flushLater has a flush the writer's full queue refused tried again
// soon; meanwhile the channel keeps buffering.
func (c *channel) flushLater() {
	if !c.timerOn {
		c.armTimer(c.h.cfg.PersistInterval / 4)
	}
}

// commitProducers lists the producer states of commits, in order.
func commitProducers(commits []*Commit) []persist.ProducerState {
	var out []persist.ProducerState
	for _, sc := range commits {
		if sc.Producer != nil {
			out = append(out, *sc.Producer)
		}
	}
	return out
}

// commitStreamSeq is the last Stream-Seq of commits, or "".
func commitStreamSeq(commits []*Commit) string {
	seq := ""
	for _, sc := range commits {
		if sc.StreamSeq != "" {
			seq = sc.StreamSeq
		}
	}
	return seq
}

func (c *channel) onPersisted(r persistResult) {
	c.inFlight = false
	flight := c.flight
	c.flight = nil
	var refused map[int64]error // by seq: the requests whose stream state was not recorded
	if re, ok := errors.AsType[*persist.RefusedError](r.err); ok {
		// The messages are durable; the store refused, for good, stream
		// state of some requests (which the edge should have refused):
		// those requests alone get an error, the channel goes on.
		refused = refusedCommits(flight, re)
		c.h.log.Error("messages persisted without stream state the store refused", slog.String("channel", c.id),
			slog.Int64("to", r.last), slog.Any("err", re))
		r.err = nil
	}
	if r.err != nil {
		c.onPersistFailed(r.err)
		return
	}
	c.advance(r.last, refused)
	if c.g.running && c.g.backoff > 0 {
		c.generate() // paused by its own bounds, which this batch eased
	}
	if r.close {
		return // finished() sees closeSent with nothing in flight
	}
	if c.lastSeq > c.p {
		if c.stopping || c.closing || c.lettingGo || len(c.waiters) > 0 {
			c.flush()
		} else if !c.timerOn {
			c.armTimer(c.h.cfg.PersistInterval)
		}
	} else if c.closing || c.stopping {
		c.flush()
	}
}

// onPersistFailed handles a batch the writer gave up for good: another
// node took the channel over, it was deleted, the store refused it, or the
// server is stopping with the store down.
func (c *channel) onPersistFailed(err error) {
	if errors.Is(err, persist.ErrFenced) {
		c.onFenced()
		return
	}
	if errors.Is(err, persist.ErrNotFound) && (c.deleting.Load() || c.h.peers.deletesElsewhere()) {
		// Hub.Delete tells the actor too, once the delete is committed. In
		// cluster mode another node may have deleted the channel while it
		// could not reach this one: the row of an open channel goes only
		// by a delete.
		c.deleted = true
		return
	}
	if err != nil && !errors.Is(err, persist.ErrClosed) {
		// The writer refused the batch for good (the channel's row is
		// gone, or the store rejects the data): retrying cannot help and
		// every later batch would follow it. The channel fails alone:
		// its subscribers and waiting producers are told, the messages
		// not yet durable are lost, and the next request takes the
		// channel over from the store as a restart would.
		c.failed = err
		c.h.metrics.failures.Inc()
		c.h.log.Error("channel failed: its messages cannot be persisted", slog.String("channel", c.id),
			slog.Int64("from", c.p+1), slog.Int64("to", c.lastSeq), slog.Any("err", err))
		return
	}
	// The writer gave up (ErrClosed): the server is stopping with the
	// store down.
	c.closeSent = false
	c.gaveUp = true
	c.logLost(err)
}

// advance moves the persisted mark to last: the messages up to it are
// durable, their memory now retained, and their waiting requesters are
// answered (with the error in refused of one whose stream state the store
// refused).
func (c *channel) advance(last int64, refused map[int64]error) {
	n := last - c.p
	var freed int64
	if n > 0 {
		for _, m := range c.buf[c.index(c.p+1) : c.index(last)+1] {
			freed += msgCost(m)
		}
	}
	c.bufBytes -= freed
	c.retained += freed
	c.h.persisted(n, freed)
	c.p = last
	c.trim()
	c.statPersisted.Store(c.p)
	c.publish(EventPersisted, c.p, 0, nil)
	i := 0
	for ; i < len(c.waiters) && c.waiters[i].seq <= c.p; i++ {
		c.waiters[i].result <- appendResult{seq: c.waiters[i].seq, err: refused[c.waiters[i].seq]}
	}
	c.waiters = c.waiters[i:]
}

// refusedCommits maps the seq of each request of commits whose stream state
// re lists as not recorded to the error its requester gets.
func refusedCommits(commits []*Commit, re *persist.RefusedError) map[int64]error {
	out := make(map[int64]error)
	for _, sc := range commits {
		hit := sc.StreamSeq != "" && sc.StreamSeq == re.StreamSeq
		if p := sc.Producer; p != nil && slices.Contains(re.Producers, *p) {
			hit = true
		}
		if hit {
			out[sc.seq] = &RecordRefusedError{Seq: sc.seq, Err: re}
		}
	}
	return out
}
