package hub

import (
	"context"
	"fmt"
	"time"

	"github.com/messages-server/messages/persist"
)

// ChannelInfo describes a channel, as the channels API shows it.
type ChannelInfo struct {
	ID           string             `json:"id"`
	Epoch        string             `json:"epoch"`
	Open         bool               `json:"open"`
	LastSeq      int64              `json:"last_seq"`
	PersistedSeq int64              `json:"persisted_seq"`
	Subscribers  int64              `json:"subscribers"`
	CreatedAt    time.Time          `json:"created_at"`
	ClosedAt     *time.Time         `json:"closed_at"`
	Generator    *persist.Generator `json:"generator"`
	// ContentType is set for a channel created as a Durable Streams stream.
	ContentType string `json:"content_type,omitempty"`
}

// infoOf describes the channel of record rec, run by actor c if one runs it
// in this process. An open channel that no actor runs is taken over by its
// next use, which opens a new epoch: that is the epoch shown, the one a
// subscriber would get. loading tells that a take-over is under way, and
// rec may or may not have its new epoch yet: the record's is shown.
func (h *Hub) infoOf(rec persist.Channel, c *channel, loading bool) ChannelInfo {
	info := ChannelInfo{
		ID: rec.ID, Epoch: fmt.Sprint(rec.Epoch), Open: rec.Open(), LastSeq: rec.LastSeq,
		PersistedSeq: rec.LastSeq, CreatedAt: rec.CreatedAt, Generator: rec.Generator,
		ContentType: rec.ContentType,
	}
	if !rec.Open() {
		t := rec.ClosedAt
		info.ClosedAt = &t
	} else if c == nil && !loading {
		info.Epoch = fmt.Sprint(rec.Epoch + 1)
	}
	if c != nil {
		info.Epoch = c.epochString()
		info.Open = true
		info.LastSeq = c.statLast.Load()
		info.PersistedSeq = c.statPersisted.Load()
		info.Subscribers = c.statSubs.Load()
	}
	return info
}

// owner returns the actor of id if one runs in this process, or else the
// channel closed when a take-over of id in progress ends, if there is one.
func (h *Hub) owner(id string) (*channel, chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.channels[id]; c != nil {
		return c, nil
	}
	return nil, h.loading[id]
}

// Info describes one channel.
func (h *Hub) Info(ctx context.Context, id string) (ChannelInfo, error) {
	for {
		rec, err := h.store.Channel(ctx, id)
		if err != nil {
			return ChannelInfo{}, StoreErr(err)
		}
		// An actor is installed in the same step as its take-over ends,
		// so with no actor and no take-over under way, rec's epoch is the
		// last one opened.
		c, loading := h.owner(id)
		if c != nil || loading == nil {
			return h.infoOf(rec, c, false), nil
		}
		select {
		case <-loading:
		case <-ctx.Done():
			return ChannelInfo{}, ctx.Err()
		}
	}
}

// List describes up to limit channels with id > after, ordered by id.
func (h *Hub) List(ctx context.Context, after string, limit int) ([]ChannelInfo, error) {
	recs, err := h.store.Channels(ctx, after, limit)
	if err != nil {
		return nil, StoreErr(err)
	}
	out := make([]ChannelInfo, len(recs))
	for i, rec := range recs {
		c, loading := h.owner(rec.ID)
		out[i] = h.infoOf(rec, c, loading != nil)
	}
	return out, nil
}

// History returns up to limit messages with seq > from: the persisted ones
// from the store, the rest from the channel's buffer.
func (h *Hub) History(ctx context.Context, id string, from int64, limit int) ([]persist.Message, error) {
	msgs, _, err := h.HistoryTyped(ctx, id, from, limit)
	return msgs, err
}

// HistoryTyped is History, and the channel's content type.
func (h *Hub) HistoryTyped(ctx context.Context, id string, from int64, limit int) ([]persist.Message, string, error) {
	snap, err := h.peek(ctx, id, from)
	if err != nil {
		return nil, "", err
	}
	if from > snap.lastSeq {
		return nil, "", &FromError{From: from, LastSeq: snap.lastSeq}
	}
	var out []persist.Message
	if from < snap.fromStore {
		rows, err := h.store.Messages(ctx, id, from, min(limit, int(snap.fromStore-from)))
		if err != nil {
			return nil, "", StoreErr(err)
		}
		out = rows
	}
	EachBuffered(snap.buffered, func(seq, t int64, data []byte) bool {
		if len(out) >= limit || seq != from+int64(len(out))+1 {
			return false
		}
		out = append(out, persist.Message{Seq: seq, Time: t, Data: data})
		return true
	})
	return out, snap.contentType, nil
}

// peek takes a snapshot without registering a subscriber.
func (h *Hub) peek(ctx context.Context, id string, from int64) (snapshot, error) {
	snap, _, err := h.subscribe(ctx, id, from, false)
	return snap, err
}
