package streams

import (
	"context"
	"errors"
	"unicode/utf8"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/durable"
	"github.com/messages-server/messages/ws/hub"
)

// Create implements durable.Backend. A fork is created with a copy of the
// source's messages up to the fork point (see durable.Fork): from then on
// it is a channel like any other, independent of its source.
func (b *Backend) Create(ctx context.Context, name string, cfg durable.Config, msgs [][]byte, closed bool) (durable.Info, bool, error) {
	if !hub.ValidID(name) {
		return durable.Info{}, false, &durable.BadRequestError{Msg: hub.IDError(name)}
	}
	if err := persist.CheckField("Content-Type", cfg.ContentType); err != nil {
		return durable.Info{}, false, &durable.BadRequestError{Msg: err.Error()}
	}
	for {
		st, err := b.state(ctx, name)
		if err == nil {
			if !b.sameAs(ctx, st, cfg) {
				return durable.Info{}, false, durable.ErrConflict
			}
			info, err := b.info(ctx, name, st)
			return info, false, err
		}
		if errors.Is(err, durable.ErrDeleted) {
			return durable.Info{}, false, durable.ErrConflict
		}
		if !errors.Is(err, durable.ErrNotFound) {
			return durable.Info{}, false, err
		}
		var fork forkPoint
		var prefix [][]byte
		var epoch int64
		if cfg.Fork != nil {
			if cfg, fork, prefix, epoch, err = b.forkFrom(ctx, cfg); err != nil {
				return durable.Info{}, false, err
			}
		}
		err = b.h.CreateWith(ctx, name, func(ctx context.Context) (persist.Channel, error) {
			return b.store.CreateStream(ctx, name, persist.StreamConfig{
				ContentType: cfg.ContentType, TTL: cfg.TTL, ExpiresAt: cfg.ExpiresAt,
				ForkedFrom: fork.from, ForkSeq: fork.seq, ForkSub: fork.sub, Epoch: epoch})
		})
		if errors.Is(err, hub.ErrExists) {
			continue // created meanwhile: compare with it
		}
		if err != nil {
			return durable.Info{}, false, streamErr(err)
		}
		st = b.newState(cfg, fork)
		b.mu.Lock()
		b.cache(name, st)
		b.mu.Unlock()
		msgs = append(prefix, msgs...)
		// A long fork is copied in durable chunks, so that no request
		// passes the channel's bound of unpersisted messages.
		for len(msgs) > copyChunk {
			if _, err := b.h.AppendBatch(ctx, name, msgs[:copyChunk], true, nil); err != nil {
				return durable.Info{}, true, streamErr(err)
			}
			msgs = msgs[copyChunk:]
		}
		if len(msgs) > 0 || closed {
			res, err := b.Append(ctx, name, durable.Append{Messages: msgs, Close: closed})
			return res.Info, true, err
		}
		info, err := b.info(ctx, name, st)
		return info, true, err
	}
}

// copyChunk is how many messages a fork copies per actor request.
const copyChunk = 10_000

// sameAs reports whether an existing stream has the configuration a PUT
// asks for. A fork's content type and expiry default to its source's, and
// its offset to wherever it forked.
func (b *Backend) sameAs(ctx context.Context, st *streamState, cfg durable.Config) bool {
	f := cfg.Fork
	if f == nil {
		return st.cfg.Same(cfg)
	}
	if f.From != st.fork.from || f.Sub != st.fork.sub || (f.Offset != nil && f.Offset.Seq != st.fork.seq) {
		return false
	}
	if cfg.ContentType == "" {
		cfg.ContentType = st.cfg.ContentType
	}
	if cfg.TTL == 0 && cfg.ExpiresAt.IsZero() {
		cfg.TTL, cfg.ExpiresAt = st.cfg.TTL, st.cfg.ExpiresAt
	}
	return st.cfg.Same(cfg)
}

// forkFrom resolves a fork's configuration against its source: the content
// type and expiry it inherits, where it forks, the messages it starts with,
// and the epoch it starts in (the source's).
func (b *Backend) forkFrom(ctx context.Context, cfg durable.Config) (durable.Config, forkPoint, [][]byte, int64, error) {
	f := cfg.Fork
	if !hub.ValidID(f.From) {
		// Not a name any stream has, nor one the store can look up.
		return cfg, forkPoint{}, nil, 0, &durable.BadRequestError{Msg: "Stream-Forked-From: " + hub.IDError(f.From)}
	}
	src, err := b.state(ctx, f.From)
	if errors.Is(err, durable.ErrDeleted) {
		return cfg, forkPoint{}, nil, 0, durable.ErrConflict
	}
	if err != nil {
		return cfg, forkPoint{}, nil, 0, err
	}
	if cfg.ContentType == "" {
		cfg.ContentType = src.cfg.ContentType
	} else if !durable.SameType(cfg.ContentType, src.cfg.ContentType) {
		return cfg, forkPoint{}, nil, 0, durable.ErrConflict
	}
	if cfg.TTL == 0 && cfg.ExpiresAt.IsZero() {
		cfg.TTL, cfg.ExpiresAt = src.cfg.TTL, src.cfg.ExpiresAt
	}
	info, err := b.info(ctx, f.From, src)
	if err != nil {
		return cfg, forkPoint{}, nil, 0, err
	}
	at := forkPoint{from: f.From, seq: info.Tail.Seq, sub: f.Sub}
	if f.Offset != nil {
		at.seq = f.Offset.Seq
	}
	if at.seq > info.Tail.Seq {
		return cfg, forkPoint{}, nil, 0, &durable.BadRequestError{Msg: "Stream-Fork-Offset is past the end of the source stream"}
	}
	upto := at.seq
	if at.sub > 0 {
		upto++
		if durable.IsJSON(cfg.ContentType) {
			upto = at.seq + at.sub
		}
		if upto > info.Tail.Seq {
			return cfg, forkPoint{}, nil, 0, &durable.BadRequestError{Msg: "Stream-Fork-Sub-Offset is past the end of the source stream"}
		}
	}
	msgs, err := b.messagesUpTo(ctx, f.From, upto)
	if err != nil {
		return cfg, forkPoint{}, nil, 0, err
	}
	if at.sub > 0 && !durable.IsJSON(cfg.ContentType) {
		last := msgs[len(msgs)-1]
		if at.sub > int64(len(last)) {
			return cfg, forkPoint{}, nil, 0, &durable.BadRequestError{Msg: "Stream-Fork-Sub-Offset is past the end of the message it points into"}
		}
		if durable.IsText(cfg.ContentType) && !utf8.Valid(last[:at.sub]) {
			// A text stream holds UTF-8 only (see durable.Handler).
			return cfg, forkPoint{}, nil, 0, &durable.BadRequestError{Msg: "Stream-Fork-Sub-Offset splits a UTF-8 character of a text stream"}
		}
		msgs[len(msgs)-1] = last[:at.sub]
	}
	return cfg, at, msgs, info.Tail.Epoch, nil
}

// messagesUpTo reads the messages 1..upto of a stream.
func (b *Backend) messagesUpTo(ctx context.Context, name string, upto int64) ([][]byte, error) {
	var out [][]byte
	for int64(len(out)) < upto {
		msgs, _, err := b.Read(ctx, name, durable.Pos{Seq: int64(len(out))}, 1<<20)
		if err != nil {
			return nil, err
		}
		if len(msgs) == 0 {
			return nil, &durable.BadRequestError{Msg: "the source stream is shorter than the fork point"}
		}
		out = append(out, msgs[:min(len(msgs), int(upto)-len(out))]...)
	}
	return out, nil
}

// Delete implements durable.Backend.
func (b *Backend) Delete(ctx context.Context, name string) error {
	for {
		st, err := b.state(ctx, name)
		if err != nil {
			return err
		}
		if err := b.remove(ctx, name, st); !errors.Is(err, errEvicted) {
			return err
		}
	}
}

// errEvicted: the state was dropped from the cache; load it again.
var errEvicted = errors.New("stream state evicted")

// remove deletes a stream: unless forks of it remain, it deletes the
// channel (its subscribers end with "deleted"), then any deleted ancestors
// that were kept only for it. A stream with forks is closed and only
// marked deleted.
func (b *Backend) remove(ctx context.Context, name string, st *streamState) error {
	if err := st.acquire(ctx); err != nil {
		return err
	}
	defer st.release()
	if st.evicted {
		return errEvicted
	}
	if st.deleted || st.gone.Load() {
		return nil // removed meanwhile
	}
	n, err := b.store.Forks(ctx, name)
	if err != nil {
		return streamErr(hub.StoreErr(err))
	}
	if n > 0 {
		// Kept for its forks: closed (its subscribers get the end) and
		// marked deleted.
		if _, err := b.h.Close(ctx, name); err != nil && !errors.Is(err, hub.ErrChannelClosed) {
			return streamErr(err)
		}
		if err := b.store.MarkDeleted(ctx, name); err != nil {
			return streamErr(hub.StoreErr(err))
		}
		st.gone.Store(true)
		return nil
	}
	if err := b.drop(ctx, name, st); err != nil {
		return err
	}
	return b.collect(ctx, st.fork.from)
}

// drop deletes a stream's channel and forgets its state. The caller holds
// st's write token.
func (b *Backend) drop(ctx context.Context, name string, st *streamState) error {
	// Hub.Delete ends the channel's subscribers with "deleted".
	if err := b.h.Delete(ctx, name); err != nil && !errors.Is(err, hub.ErrNotFound) {
		return streamErr(err)
	}
	st.deleted = true
	b.mu.Lock()
	if b.streams[name] == st {
		delete(b.streams, name)
	}
	b.mu.Unlock()
	return nil
}

// collect removes the deleted ancestors of a removed fork, starting at its
// source, that no fork keeps any more.
func (b *Backend) collect(ctx context.Context, name string) error {
	for name != "" {
		st, err := b.load(ctx, name)
		if errors.Is(err, durable.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if !st.gone.Load() {
			return nil
		}
		n, err := b.store.Forks(ctx, name)
		if err != nil {
			return streamErr(hub.StoreErr(err))
		}
		if n > 0 {
			return nil
		}
		if err := st.acquire(ctx); err != nil {
			return err
		}
		if st.evicted {
			st.release()
			continue // load it again
		}
		err = b.drop(ctx, name, st)
		st.release()
		if err != nil {
			return err
		}
		name = st.fork.from
	}
	return nil
}
