package ws

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

func (h *Hub) infoOf(rec persist.Channel, c *channel) ChannelInfo {
	info := ChannelInfo{
		ID: rec.ID, Epoch: fmt.Sprint(rec.Epoch), Open: rec.Open(), LastSeq: rec.LastSeq,
		PersistedSeq: rec.LastSeq, CreatedAt: rec.CreatedAt, Generator: rec.Generator,
		ContentType: rec.ContentType,
	}
	if !rec.Open() {
		t := rec.ClosedAt
		info.ClosedAt = &t
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

// Info describes one channel.
func (h *Hub) Info(ctx context.Context, id string) (ChannelInfo, error) {
	rec, err := h.store.Channel(ctx, id)
	if err != nil {
		return ChannelInfo{}, storeErr(err)
	}
	return h.infoOf(rec, h.running(id)), nil
}

// List describes up to limit channels with id > after, ordered by id.
func (h *Hub) List(ctx context.Context, after string, limit int) ([]ChannelInfo, error) {
	recs, err := h.store.Channels(ctx, after, limit)
	if err != nil {
		return nil, storeErr(err)
	}
	out := make([]ChannelInfo, len(recs))
	for i, rec := range recs {
		out[i] = h.infoOf(rec, h.running(rec.ID))
	}
	return out, nil
}

// History returns up to limit messages with seq > from: the persisted ones
// from the store, the rest from the channel's buffer.
func (h *Hub) History(ctx context.Context, id string, from int64, limit int) ([]persist.Message, error) {
	msgs, _, err := h.page(ctx, id, from, limit)
	return msgs, err
}

// page is History, and the channel's content type.
func (h *Hub) page(ctx context.Context, id string, from int64, limit int) ([]persist.Message, string, error) {
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
			return nil, "", storeErr(err)
		}
		out = rows
	}
	for _, m := range snap.buffered {
		if len(out) >= limit || m.Seq != from+int64(len(out))+1 {
			break
		}
		out = append(out, persist.Message{Seq: m.Seq, Time: m.Time, Data: m.Data})
	}
	return out, snap.contentType, nil
}

// peek takes a snapshot without registering a subscriber.
func (h *Hub) peek(ctx context.Context, id string, from int64) (snapshot, error) {
	snap, _, err := h.subscribe(ctx, id, from, false)
	return snap, err
}
