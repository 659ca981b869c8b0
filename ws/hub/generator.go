package hub

import (
	"log/slog"
	"slices"
	"strconv"
	"time"
)

// Generator bounds: a generator line is appended at least MinFreq and at
// most MaxFreq times a second, and a generated stream has at most MaxLines lines.
const (
	MinFreq  = 0.001
	MaxFreq  = 100_000
	MaxLines = 10_000_000
)

// generatorLine is the reference server's line i of channel id.
func generatorLine(i int64, id string) []byte {
	b := slices.Grow([]byte(nil), len(id)+24) // capacity = allocation, for memory accounting
	b = strconv.AppendInt(b, i, 10)
	b = append(b, ": "...)
	b = append(b, id...)
	return append(b, '\n')
}

// generator is the state of a channel's generator, owned by the channel's
// actor: the generator is no goroutine of its own. The hub's wheel wakes
// the actor when the next line is due, and the actor appends every line
// due by then in that one step (see channel.generate).
type generator struct {
	running bool          // started, not finished or stopped
	next    int64         // the next line
	first   int64         // the line due at start
	start   time.Time     // when first was due
	period  time.Duration // between two lines
	tick    int64         // the wheel tick the next line is due at
	backoff time.Duration // paused by back-pressure: the wait before a retry
	// room wakes the actor when the hub's released messages leave room
	// for the paused generator (see Hub.waitRoom); nil unless paused by
	// the hub's memory bound.
	room <-chan struct{}
}

// genBegin starts c's generator at line lastSeq+1: lines are due from now
// on, one per period. A generator past its last line only closes the
// channel: a shutdown or crash may have come between the two. Called by
// run.
func (c *channel) genBegin() {
	if c.gen == nil || c.g.running || c.role.elsewhere() != nil {
		return
	}
	c.g = generator{
		running: true,
		next:    c.lastSeq + 1,
		first:   c.lastSeq + 1,
		start:   time.Now(),
		period:  time.Duration(float64(time.Second) / c.gen.Freq),
	}
	c.generate()
}

// generate appends the lines of c's generator that are due, in order, then
// has the wheel wake the actor when the next one is. Past the last line it
// closes the channel. When the memory bound refuses a line, the generator
// pauses: it tries again when messages are released, or after a backoff,
// then goes on at its frequency from there, without a burst. A line is
// never skipped. Called by run.
func (c *channel) generate() {
	g := &c.g
	if !g.running {
		return
	}
	if c.closing || c.stopping || c.left != 0 || c.failed != nil || c.deleted || c.role.elsewhere() != nil {
		g.running = false // closed, stopping, or moved: the new owner goes on
		return
	}
	now := time.Now()
	if g.backoff > 0 {
		// Restart the schedule so the generator does not burst after the
		// pause.
		g.start, g.first = now, g.next
	}
	due := min(g.first+int64(now.Sub(g.start)/max(g.period, 1)), c.gen.Max)
	at := now.UnixMicro()
	appended := false
	for ; g.next <= due; g.next++ {
		m := newMessage(c.binary, c.lastSeq+1, at, generatorLine(g.next, c.id))
		if cost := msgCost(m); !c.reserve(1, cost) {
			c.genPause(cost)
			break
		}
		if g.backoff > 0 {
			g.backoff, g.room = 0, nil
		}
		c.add(m)
		c.publish(EventMessage, m.Seq, m.Time, m.Data)
		appended = true
	}
	if appended && !c.timerOn && !c.inFlight {
		c.armTimer(c.h.cfg.PersistInterval)
	}
	if g.next > c.gen.Max {
		// The last line is in: the channel closes once it is durable.
		g.running = false
		c.closing = true
		c.flush()
		return
	}
	if g.backoff > 0 {
		g.tick = c.h.wheel.ceilTick(now.Add(g.backoff))
	} else {
		g.tick = c.h.wheel.ceilTick(g.start.Add(time.Duration(g.next-g.first) * g.period))
	}
	c.h.wheel.at(c, g.tick)
}

// genPause pauses c's generator: a memory bound refused its next line,
// costing cost. It goes on after a backoff, or sooner: when the hub's
// released messages leave room for it if the hub's bound refused it, when
// the channel's own batch is persisted (see onPersisted) if the channel's
// bounds did.
func (c *channel) genPause(cost int64) {
	g := &c.g
	if g.backoff == 0 {
		c.h.pausedLog.Log(c.h.ctx, slog.String("channel", c.id), slog.Int64("seq", g.next))
	}
	g.backoff = min(max(2*g.backoff, 10*time.Millisecond), time.Second)
	g.room = nil
	if c.h.memBytes.Load()+cost > c.h.cfg.MaxBufferedBytes {
		g.room = c.h.waitRoom(c, cost)
	}
}

// genDue reports whether c's generator has a line due at wheel tick now.
func (c *channel) genDue(now int64) bool { return c.g.running && now >= c.g.tick }
