package ws

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/messages-server/messages/ws/wire"
)

// sink receives one subscriber's stream. Calls come from one goroutine, in
// order: hello once, then runs of contiguous messages, live once (unless the
// channel was already closed), and end if the channel ends.
type sink interface {
	hello(h helloInfo) error
	// messages delivers a contiguous run; live tells whether they were
	// appended after the subscriber caught up.
	messages(msgs []*wire.Message, live bool) error
	live(seq int64) error
	end(seq int64) error
}

// helloInfo is what a subscriber learns first.
type helloInfo struct {
	channel   string
	epoch     int64
	from      int64
	lastSeq   int64
	persisted int64
	open      bool
}

// ResetError reports a resume from an epoch whose tail was lost: the client's
// history past Survived is not this channel's history any more.
type ResetError struct {
	Epoch    int64 // the current epoch
	Survived int64 // the last seq the client's epoch and the current one share
}

func (e *ResetError) Error() string {
	return fmt.Sprintf("the channel restarted (epoch %d) and lost messages after seq %d: resume from at most %d with the new epoch",
		e.Epoch, e.Survived, e.Survived)
}

// maxRun bounds how many queued live messages go into one write, and
// maxRunBytes how much data.
const (
	maxRun      = 512
	maxRunBytes = 256 << 10
)

// stream delivers channel id after from to s: the persisted history, the
// buffered messages, then live messages until the channel ends, ctx is done
// or the server stops. A subscriber that falls behind is detached by the
// actor and caught up again here, from the last message it was given.
func (h *Hub) stream(ctx context.Context, id string, from int64, epoch string, s sink) error {
	started := time.Now()
	if epoch != "" {
		if err := h.checkEpoch(ctx, id, from, epoch); err != nil {
			return err
		}
	}
	last := from
	first := true
	sentLive := false
	var run []*wire.Message
	for {
		snap, reg, err := h.subscribe(ctx, id, last, true)
		if err != nil {
			return err
		}
		if last > snap.lastSeq {
			return &FromError{From: last, LastSeq: snap.lastSeq}
		}
		if first {
			first = false
			err := s.hello(helloInfo{channel: id, epoch: snap.epoch, from: from, lastSeq: snap.lastSeq,
				persisted: snap.persisted, open: snap.open})
			if err != nil {
				h.unregister(reg)
				return err
			}
		}
		if err := h.history(ctx, id, &last, snap.fromStore, s); err != nil {
			h.unregister(reg)
			return err
		}
		if err := sendRuns(s, snap.buffered); err != nil {
			h.unregister(reg)
			return err
		}
		if n := len(snap.buffered); n > 0 {
			last = snap.buffered[n-1].Seq
		}
		if reg == nil {
			// Closed channel: everything came from the store.
			if !sentLive {
				h.metrics.catchup.Observe(time.Since(started).Seconds())
			}
			return s.end(last)
		}
		if !sentLive {
			sentLive = true
			h.metrics.catchup.Observe(time.Since(started).Seconds())
			if err := s.live(last); err != nil {
				h.unregister(reg)
				return err
			}
		}
		var reason int
		reason, last, run, err = h.drain(ctx, reg, last, run, s)
		if err != nil {
			h.unregister(reg)
			return err
		}
		switch reason {
		case reasonEnded:
			return s.end(reg.s.endSeq)
		case reasonShutdown:
			return ErrShuttingDown
		}
		// Detached: catch up again from last.
	}
}

// drain sends live messages from reg's queue until the actor closes it, and
// returns why it did and the last seq sent.
func (h *Hub) drain(ctx context.Context, reg *registration, last int64, run []*wire.Message, s sink) (int, int64, []*wire.Message, error) {
	q := reg.s.queue
	var idle <-chan time.Time
	p, _ := s.(pinger)
	if p != nil {
		t := time.NewTicker(p.heartbeat())
		defer t.Stop()
		idle = t.C
	}
	for {
		var m *wire.Message
		var ok bool
		select {
		case m, ok = <-q:
		case <-idle:
			if err := p.keepalive(); err != nil {
				return 0, last, run, err
			}
			continue
		case <-ctx.Done():
			return 0, last, run, ctx.Err()
		}
		if !ok {
			return reg.s.reason, last, run, nil
		}
		run = append(run[:0], m)
		size := len(m.Data)
		closed := false
	gather:
		for len(run) < maxRun && size < maxRunBytes {
			select {
			case m, ok = <-q:
				if !ok {
					closed = true
					break gather
				}
				run = append(run, m)
				size += len(m.Data)
			default:
				break gather
			}
		}
		if err := s.messages(run, true); err != nil {
			return 0, last, run, err
		}
		last = run[len(run)-1].Seq
		clear(run)
		if closed {
			return reg.s.reason, last, run, nil
		}
	}
}

// history sends the persisted messages *last+1..upto from the store.
func (h *Hub) history(ctx context.Context, id string, last *int64, upto int64, s sink) error {
	for *last < upto {
		rows, err := h.store.Messages(ctx, id, *last, int(min(int64(h.cfg.HistoryPage), upto-*last)))
		if err != nil {
			return storeErr(err)
		}
		if len(rows) == 0 {
			return fmt.Errorf("ws: history of %s: no rows after seq %d, expected up to %d", id, *last, upto)
		}
		run := make([]*wire.Message, 0, len(rows))
		for _, r := range rows {
			if r.Seq != *last+int64(len(run))+1 {
				return fmt.Errorf("ws: history of %s: got seq %d after %d", id, r.Seq, *last+int64(len(run)))
			}
			run = append(run, wire.NewMessage(r.Seq, r.Time, r.Data))
		}
		if err := sendRuns(s, run); err != nil {
			return err
		}
		*last = run[len(run)-1].Seq
	}
	return nil
}

// pinger is a sink that keeps an idle connection alive: keepalive is
// called every heartbeat while the stream waits for messages.
type pinger interface {
	heartbeat() time.Duration
	keepalive() error
}

// sendRuns sends catch-up messages to s in runs of at most maxRun messages
// and about maxRunBytes of data, one frame each.
func sendRuns(s sink, msgs []*wire.Message) error {
	for i := 0; i < len(msgs); {
		j, size := i, 0
		for j < len(msgs) && j-i < maxRun && size < maxRunBytes {
			size += len(msgs[j].Data)
			j++
		}
		if err := s.messages(msgs[i:j], false); err != nil {
			return err
		}
		i = j
	}
	return nil
}

func (h *Hub) unregister(reg *registration) {
	if reg != nil {
		h.unsubscribe(reg.c, reg.s)
	}
}

// checkEpoch refuses a resume whose epoch lost messages the client has.
func (h *Hub) checkEpoch(ctx context.Context, id string, from int64, epoch string) error {
	e, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || e < 1 {
		return &BadRequestError{Msg: fmt.Sprintf("epoch %q is not a positive integer", epoch)}
	}
	// Only the epoch is needed: from past any seq makes the actor answer
	// without copying its buffer.
	snap, err := h.peek(ctx, id, math.MaxInt64)
	if err != nil {
		return err
	}
	if e == snap.epoch {
		return nil
	}
	if e > snap.epoch {
		return &BadRequestError{Msg: fmt.Sprintf("epoch %d is newer than the channel's epoch %d", e, snap.epoch)}
	}
	survived, err := h.store.Survived(ctx, id, e)
	if err != nil {
		return storeErr(err)
	}
	if from > survived {
		return &ResetError{Epoch: snap.epoch, Survived: survived}
	}
	return nil
}

// BadRequestError reports an invalid parameter.
type BadRequestError struct{ Msg string }

func (e *BadRequestError) Error() string { return e.Msg }

// isClientGone reports errors that mean the consumer went away.
func isClientGone(err error) bool {
	return errors.Is(err, context.Canceled)
}
