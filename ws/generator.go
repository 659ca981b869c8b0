package ws

import (
	"errors"
	"log/slog"
	"math"
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

// generate appends the lines next..Max of c's generator at its frequency,
// then closes the channel. It runs on its own goroutine, as any producer
// would, and stops early when the hub stops or the channel is closed.
func (h *Hub) generate(c *channel, next int64) {
	if c.started != nil {
		select {
		case <-c.started:
		case <-h.ctx.Done():
			return
		case <-c.done:
			return
		}
	}
	gen := c.gen
	period := time.Duration(float64(time.Second) / gen.Freq)
	tick := max(period, time.Millisecond)
	start := time.Now()
	first := next
	t := time.NewTicker(tick)
	defer t.Stop()
	result := make(chan appendResult, 1)
	backoff := time.Duration(0)
	for next <= gen.Max {
		// Lines are due on a fixed schedule; when the ticker is coarser
		// than the period, several are due at once.
		due := first + int64(math.Floor(float64(time.Since(start))/float64(period)))
		for next <= gen.Max && next <= due {
			req := &appendReq{data: generatorLine(next, c.id), time: time.Now().UnixMicro(), generated: true, result: result}
			sent, err := c.request(h.ctx, req)
			if err != nil || !sent {
				return
			}
			r, ok, err := await(h.ctx, c, result)
			switch {
			case err != nil || !ok || errors.Is(r.err, ErrChannelClosed) || errors.Is(r.err, ErrShuttingDown) ||
				errors.Is(r.err, ErrChannelDeleted) ||
				errors.Is(r.err, ErrMoved) || h.ctx.Err() != nil:
				// ErrMoved: the generator goes on at the channel's new owner.
				return
			case errors.Is(r.err, ErrOverloaded):
				// Back-pressure: retry this line later, never skip it.
				if backoff == 0 {
					h.pausedLog.Log(h.ctx, slog.String("channel", c.id), slog.Int64("seq", next))
				}
				backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
			case r.err != nil:
				h.log.Error("generator append failed", slog.String("channel", c.id), slog.Any("err", r.err))
				return
			default:
				backoff = 0
				next++
				continue
			}
			break
		}
		if next > gen.Max {
			break
		}
		wait := tick
		var room <-chan struct{}
		if backoff > 0 {
			// Paused: try again when messages are released, or after the
			// backoff at the latest.
			wait = backoff
			room = h.roomFreed()
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-room:
		case <-h.ctx.Done():
			return
		case <-c.done:
			return
		}
		if backoff > 0 {
			// Restart the schedule so the generator does not burst after
			// the pause.
			start, first = time.Now(), next
		}
	}
	sent, err := c.request(h.ctx, closeReq{result: result, generated: true})
	if err != nil || !sent {
		return
	}
	if r, ok, err := await(h.ctx, c, result); err == nil && ok && r.err != nil && !errors.Is(r.err, ErrChannelClosed) &&
		!errors.Is(r.err, ErrShuttingDown) && !errors.Is(r.err, ErrMoved) && h.ctx.Err() == nil {
		h.log.Error("generator close failed", slog.String("channel", c.id), slog.Any("err", r.err))
	}
}
