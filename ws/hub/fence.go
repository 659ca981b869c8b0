package hub

import (
	"errors"
	"log/slog"
)

// ErrMoved means that another node owns the channel (cluster mode): it took
// the channel over, or holds its lease. The request may be sent again, to
// that node; a subscriber resumes with from and epoch, as after a restart.
var ErrMoved = errors.New("channel moved to another node")

// onFenced ends an actor whose batch was fenced: another node took the
// channel over and started a new epoch, so nothing more of this actor's
// can be written. The fenced batch and every message after it are not
// persisted, and no one is told they are: waiters get ErrMoved, appends
// and closes are refused with ErrMoved from now on, and the subscribers
// are detached with reasonMoved, which tells them to resume elsewhere.
// Subscribers that saw the lost messages get a reset on resume, as after
// a crash. finished reports true at once; exit does the rest. Called by
// run.
func (c *channel) onFenced() {
	c.leave(reasonMoved)
	c.closeSent = false
	c.h.metrics.fenced.Inc()
	c.h.log.Warn("channel taken over by another node: stopping its actor",
		slog.String("channel", c.id), slog.Int64("epoch", c.epoch),
		slog.Int64("persisted", c.p), slog.Int64("lost_to", c.lastSeq))
}
