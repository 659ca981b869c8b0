package ws

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wire"
)

// history sends the persisted messages *last+1..upto from the store; those
// of a binary channel carry their data base64-encoded.
func (h *Hub) history(ctx context.Context, id string, last *int64, upto int64, binary bool, s sink) error {
	for *last < upto {
		rows, err := h.store.Messages(ctx, id, *last, int(min(int64(h.cfg.HistoryPage), upto-*last)))
		if err != nil {
			return storeErr(err)
		}
		if len(rows) == 0 {
			if _, err := h.store.Channel(ctx, id); errors.Is(err, persist.ErrNotFound) {
				return ErrChannelDeleted // while its history was being read
			}
			return fmt.Errorf("ws: history of %s: no rows after seq %d, expected up to %d", id, *last, upto)
		}
		run := make([]*wire.Message, 0, len(rows))
		for _, r := range rows {
			if r.Seq != *last+int64(len(run))+1 {
				return fmt.Errorf("ws: history of %s: got seq %d after %d", id, r.Seq, *last+int64(len(run)))
			}
			run = append(run, newMessage(binary, r.Seq, r.Time, r.Data))
		}
		if err := sendRuns(s, run); err != nil {
			return err
		}
		*last = run[len(run)-1].Seq
	}
	return nil
}

// newMessage builds a message of a text or a binary channel.
func newMessage(binary bool, seq, t int64, data []byte) *wire.Message {
	if binary {
		return wire.NewBinaryMessage(seq, t, data)
	}
	return wire.NewMessage(seq, t, data)
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
