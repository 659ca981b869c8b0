package hub

import (
	"context"
	"errors"
	"time"

	"github.com/messages-server/messages/persist"
)

// Create records a new channel and starts its actor, and its generator if
// gen is not nil. With startWhen > 0 the generator waits until that many
// subscribers are registered (so that a benchmark can connect everyone
// first); the wait is not stored, and a generator taken over after a
// restart starts at once.
func (h *Hub) Create(ctx context.Context, id string, gen *persist.Generator, startWhen int) (ChannelInfo, error) {
	return h.create(ctx, id, func(ctx context.Context) (persist.Channel, error) {
		return h.store.CreateChannel(ctx, id, gen)
	}, gen, startWhen)
}

// create is Create with the store's insert given: record makes the row.
func (h *Hub) create(ctx context.Context, id string, record func(context.Context) (persist.Channel, error),
	gen *persist.Generator, startWhen int) (ChannelInfo, error) {
	h.mu.Lock()
	stopped := h.stopped
	h.mu.Unlock()
	if stopped {
		return ChannelInfo{}, ErrShuttingDown
	}
	rate := 0.0
	if gen != nil {
		rate = gen.Freq
	}
	release, err := h.holdNew(ctx, id, rate)
	if err != nil {
		return ChannelInfo{}, err
	}
	if err := h.peers.canOwn(); err != nil {
		release(false)
		return ChannelInfo{}, err
	}
	rec, err := record(ctx)
	if err != nil {
		release(false)
		return ChannelInfo{}, StoreErr(err)
	}
	// A new channel needs no take-over: start its actor at epoch 1.
	c := newChannel(h, rec)
	c.genCounted = true
	if gen != nil && startWhen > 0 {
		c.startWhen = startWhen
		c.started = make(chan struct{})
	}
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		release(false)
		return ChannelInfo{}, ErrShuttingDown
	}
	h.channels[id] = c
	h.startActor(c)
	h.mu.Unlock()
	release(true)
	return h.infoOf(rec, c, false), nil
}

// holdNew holds id's loading slot for a creation, so that no take-over of
// the new row by get runs a second actor for it, and counts the new
// channel's generator rate; it refuses an id that is open, a full hub and
// a rate past the bound. release(started) gives the slot back, and the
// rate too unless the channel started.
func (h *Hub) holdNew(ctx context.Context, id string, rate float64) (release func(started bool), err error) {
	for {
		h.mu.Lock()
		wait := h.loading[id]
		if wait == nil {
			var err error
			switch {
			case h.channels[id] != nil:
				err = ErrExists
			case h.full():
				err = ErrTooManyChannels
			case rate > 0 && h.genRate+rate > h.cfg.MaxGeneratorRate:
				err = ErrGeneratorRate
			}
			if err != nil {
				h.mu.Unlock()
				return nil, err
			}
			h.loading[id] = make(chan struct{})
			h.genRate += rate // the generator's share, held from now on
			h.mu.Unlock()
			break
		}
		h.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return func(started bool) {
		h.mu.Lock()
		w := h.loading[id]
		delete(h.loading, id)
		if !started {
			h.genRate -= rate
		}
		h.mu.Unlock()
		close(w)
	}, nil
}

// errPersistWait is the cause of an append's context when the persist-wait
// timeout ended it.
var errPersistWait = errors.New("persist wait timeout")

// Append adds a message to an open channel and returns its seq. With
// waitPersisted it returns only once the message is durable, or after the
// persist-wait timeout with a *PersistWaitError. Whenever the returned seq
// is not 0 the message was accepted, even if the error is not nil.
//
// In cluster mode a channel that another node owns gets the append there.
func (h *Hub) Append(ctx context.Context, id string, data []byte, waitPersisted bool) (int64, error) {
	return h.forward(ctx, Write{Channel: id, Data: data, Wait: waitPersisted}, func() (int64, error) {
		return h.AppendLocal(ctx, id, data, waitPersisted)
	})
}

// AppendLocal is Append without forwarding: it runs on this node or fails
// with a *MovedError naming the owner. The cluster layer serves forwarded
// appends with it.
func (h *Hub) AppendLocal(ctx context.Context, id string, data []byte, waitPersisted bool) (int64, error) {
	return h.appendRequest(ctx, id, [][]byte{data}, waitPersisted, nil)
}

// appendRequest appends msgs (at least one) to channel id in one actor
// step, with commit (if not nil) committed in the same transaction, and
// returns the last one's seq. With waitPersisted it returns once the last
// one (and so all of them, and commit) is durable, or after the
// persist-wait timeout with a *PersistWaitError, as Append does.
func (h *Hub) appendRequest(ctx context.Context, id string, msgs [][]byte, waitPersisted bool, commit *Commit) (int64, error) {
	req := &appendReq{data: msgs[0], rest: msgs[1:], result: make(chan appendResult, 1), commit: commit}
	if waitPersisted {
		req.persisted = make(chan appendResult, 1)
	}
	r, c, err := call(ctx, h, id, func() any {
		req.time = time.Now().UnixMicro()
		return req
	}, req.result)
	if errors.Is(err, errClosedChannel) {
		return 0, ErrChannelClosed
	}
	if err != nil {
		return 0, err
	}
	if r.err != nil || !waitPersisted {
		return r.seq, r.err
	}
	wctx, cancel := context.WithTimeoutCause(ctx, h.cfg.PersistWaitTimeout, errPersistWait)
	defer cancel()
	p, ok, err := await(wctx, c, req.persisted)
	switch {
	case err != nil && context.Cause(wctx) == errPersistWait:
		return r.seq, &PersistWaitError{Seq: r.seq, After: h.cfg.PersistWaitTimeout}
	case err != nil:
		return r.seq, err
	case !ok:
		return r.seq, ErrShuttingDown // exit answers every waiter: not reached
	}
	return r.seq, p.err
}

// Close closes an open channel: its buffer is flushed, the close is made
// durable, and every subscriber gets the end. It returns the last seq.
//
// In cluster mode a channel that another node owns is closed there.
func (h *Hub) Close(ctx context.Context, id string) (int64, error) {
	return h.forward(ctx, Write{Close: true, Channel: id}, func() (int64, error) {
		return h.CloseLocal(ctx, id)
	})
}

// CloseLocal is Close without forwarding, as AppendLocal.
func (h *Hub) CloseLocal(ctx context.Context, id string) (int64, error) {
	result := make(chan appendResult, 1)
	return h.produce(ctx, id, func() any { return closeReq{result: result} }, result)
}

// produce sends an append or a close to channel id's actor and returns the
// seq it answers.
func (h *Hub) produce(ctx context.Context, id string, req func() any, result chan appendResult) (int64, error) {
	r, _, err := call(ctx, h, id, req, result)
	if errors.Is(err, errClosedChannel) {
		return 0, ErrChannelClosed
	}
	if err != nil {
		return 0, err
	}
	return r.seq, r.err
}
