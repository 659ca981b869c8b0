package hub

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wire"
)

// historyRead is the persisted part of a catch-up: what history reads.
type historyRead struct {
	id    string
	epoch int64
	// upto is the last seq to send, and persisted the channel's durable
	// watermark (upto ≤ persisted).
	upto, persisted int64
	// final: the channel is closed at upto.
	final bool
	// binary: the channel's messages carry their data base64-encoded.
	binary bool
}

// history sends the persisted messages after+1..r.upto of channel r.id (at
// r.epoch) to s, and returns the last seq it sent (after if none), also
// when it fails. Whole pages come from the page cache: a page is cacheable
// when all its seqs are durable (≤ persisted) or, when final, when it ends
// at upto. A cached page may end past upto (at most at persisted): the
// seq returned then passes upto, and the caller skips what it already
// sent. The rest is read from the store for this reader alone.
func (h *Hub) history(ctx context.Context, r historyRead, after int64, s Sink) (int64, error) {
	id, epoch, upto, persisted, final, binary := r.id, r.epoch, r.upto, r.persisted, r.final, r.binary
	last := after
	size := int64(h.cfg.HistoryPage)
	for last < upto {
		first := last + 1
		end := (first-1)/size*size + size // the last seq of first's page
		if h.cache != nil && (first-1)%size == 0 && (end <= persisted || final) {
			want := end
			if end > persisted {
				want = upto // the closed channel's last page
			}
			p, err := h.cache.get(ctx, pageKey{channel: id, epoch: epoch, first: first}, func(ctx context.Context) (*Page, error) {
				rows, err := h.readRows(ctx, id, first-1, want)
				if err != nil {
					return nil, err
				}
				return newPage(rows, binary), nil
			})
			if err != nil {
				return last, err
			}
			if p.last != want {
				return last, fmt.Errorf("hub: history of %s: cached page %d..%d, expected it to end at %d", id, p.first, p.last, want)
			}
			if final {
				// Later readers of this closed channel need no store lookup.
				h.cache.markClosed(id, epoch, upto)
			}
			if err := s.Page(p); err != nil {
				return last, err
			}
			last = p.last
			continue
		}
		rows, err := h.readRows(ctx, id, last, min(end, upto))
		if err != nil {
			return last, err
		}
		run := make([]*wire.Message, len(rows))
		for i, r := range rows {
			run[i] = newMessage(binary, r.Seq, r.Time, r.Data)
		}
		if err := sendRuns(s, run, false); err != nil {
			return last, err
		}
		last = run[len(run)-1].Seq
	}
	return last, nil
}

// newMessage builds a message of a text or a binary channel.
func newMessage(binary bool, seq, t int64, data []byte) *wire.Message {
	if binary {
		return wire.NewBinaryMessage(seq, t, data)
	}
	return wire.NewMessage(seq, t, data)
}

// readRows reads the persisted messages after..upto of channel id, in one
// store query, and checks they are all there.
func (h *Hub) readRows(ctx context.Context, id string, after, upto int64) ([]persist.Message, error) {
	rows, err := h.store.Messages(ctx, id, after, int(upto-after))
	if err != nil {
		return nil, StoreErr(err)
	}
	for i, r := range rows {
		if r.Seq != after+int64(i)+1 {
			return nil, fmt.Errorf("hub: history of %s: got seq %d after %d", id, r.Seq, after+int64(i))
		}
	}
	if int64(len(rows)) != upto-after {
		if _, err := h.store.Channel(ctx, id); errors.Is(err, persist.ErrNotFound) {
			return nil, ErrChannelDeleted // while its history was being read
		}
		return nil, fmt.Errorf("hub: history of %s: %d rows after seq %d, expected up to %d", id, len(rows), after, upto)
	}
	return rows, nil
}

// sendRuns sends messages to s in runs of at most maxRun messages and
// about maxRunBytes of data, one frame each; live says they are live. A
// run among msgs (wire.NewRun) is cut where a frame ends.
func sendRuns(s Sink, msgs []*wire.Message, live bool) error {
	var frame []*wire.Message
	n, size := 0, 0
	for _, m := range msgs {
		for i := 0; i < m.Len(); {
			j := i + 1
			if m.Len() > 1 {
				// As much of the run as the frame takes, at least one.
				for j < m.Len() && n+j-i < maxRun && size+len(m.At(j-1)) < maxRunBytes {
					size += len(m.At(j - 1))
					j++
				}
			}
			frame = append(frame, m.Slice(i, j))
			n += j - i
			size += len(m.At(j - 1))
			i = j
			if n >= maxRun || size >= maxRunBytes {
				if err := s.Messages(frame, live); err != nil {
					return err
				}
				clear(frame)
				frame, n, size = frame[:0], 0, 0
			}
		}
	}
	if len(frame) > 0 {
		return s.Messages(frame, live)
	}
	return nil
}

// EachBuffered calls fn with the messages of msgs (a snapshot's buffered
// copy), runs taken apart, in order, until fn returns false.
func EachBuffered(msgs []*wire.Message, fn func(seq, t int64, data []byte) bool) {
	for _, m := range msgs {
		for i := range m.Len() {
			if !fn(m.Seq+int64(i), m.Time, m.At(i)) {
				return
			}
		}
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
	snap, err := h.peekTail(ctx, id)
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
		return StoreErr(err)
	}
	if from > survived {
		return &ResetError{Epoch: snap.epoch, Survived: survived}
	}
	return nil
}
