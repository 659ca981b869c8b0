package streams

import (
	"context"
	"fmt"

	"github.com/messages-server/messages/ws/durable"
	"github.com/messages-server/messages/ws/hub"
)

// catchupHoldBytes is the most data a catch-up plan keeps from its first
// walk: a range that small is sent from memory, a larger one is read again
// while it is sent.
const catchupHoldBytes = 1 << 20

// Catchup implements durable.Backend. The range ends at the tail of the
// channel's snapshot taken now, or earlier if its data would pass
// maxBytes. To know where it ends before anything is sent, a first walk
// over the messages sums their sizes (keeping them if they come to at most
// catchupHoldBytes); a larger range is read a second time, page by page,
// as it is sent. Messages up to the snapshot's tail never change within
// its epoch, so both walks see the same ones.
func (b *Backend) Catchup(ctx context.Context, name string, from durable.Pos, maxBytes int64) (durable.Range, durable.Info, error) {
	st, err := b.state(ctx, name)
	if err != nil {
		return durable.Range{}, durable.Info{}, err
	}
	b.touch(ctx, name, st)
	snap, err := b.h.Peek(ctx, name, from.Seq)
	if err != nil {
		return durable.Range{}, durable.Info{}, streamErr(err)
	}
	info := b.infoOf(st, snap)
	if err := b.checkPos(ctx, name, from, snap); err != nil {
		return durable.Range{}, info, err
	}
	var held [][]byte
	holding := true
	var size int64
	end := from.Seq
	err = b.walk(ctx, name, snap, from.Seq, snap.LastSeq, func(seq int64, data []byte) (bool, error) {
		if end > from.Seq && size+int64(len(data)) > maxBytes {
			return false, nil
		}
		size += int64(len(data))
		end = seq
		if holding && size <= catchupHoldBytes {
			held = append(held, data)
		} else {
			holding, held = false, nil
		}
		return true, nil
	})
	if err != nil {
		return durable.Range{}, info, err
	}
	start := durable.Pos{Epoch: snap.Epoch, Seq: from.Seq}
	if holding {
		return durable.HeldRange(start, held), info, nil
	}
	rng := durable.Range{End: durable.Pos{Epoch: snap.Epoch, Seq: end}}
	rng.Each = func(ctx context.Context, fn func([]byte) error) error {
		again, err := b.h.Peek(ctx, name, from.Seq)
		if err != nil {
			return streamErr(err)
		}
		if again.Epoch != snap.Epoch {
			return fmt.Errorf("streams: stream %s changed epoch (%d to %d) during a read", name, snap.Epoch, again.Epoch)
		}
		return b.walk(ctx, name, again, from.Seq, end, func(_ int64, data []byte) (bool, error) {
			return true, fn(data)
		})
	}
	return rng, info, nil
}

// walk calls fn with the messages after..upto of channel name, in order:
// those the snapshot leaves to the store a page of HistoryPage rows at a
// time, then the snapshot's buffered ones. It stops when fn returns false
// or an error.
func (b *Backend) walk(ctx context.Context, name string, snap hub.View, after, upto int64, fn func(seq int64, data []byte) (bool, error)) error {
	page := int64(b.h.Config().HistoryPage)
	last := after
	for last < min(upto, snap.FromStore) {
		rows, err := b.h.ReadRows(ctx, name, last, min(last+page, upto, snap.FromStore))
		if err != nil {
			return streamErr(err)
		}
		for _, m := range rows {
			if more, err := fn(m.Seq, m.Data); !more || err != nil {
				return err
			}
		}
		last = rows[len(rows)-1].Seq
	}
	var err error
	stopped := false
	hub.EachBuffered(snap.Buffered, func(seq, _ int64, data []byte) bool {
		switch {
		case seq <= last:
			return true
		case seq > upto:
			return false
		case seq != last+1:
			err = fmt.Errorf("streams: stream %s: buffered seq %d after %d", name, seq, last)
			return false
		}
		var more bool
		if more, err = fn(seq, data); !more || err != nil {
			stopped = true
			return false
		}
		last = seq
		return true
	})
	if err != nil || stopped {
		return err
	}
	if last < upto {
		return fmt.Errorf("streams: stream %s: read up to seq %d of %d", name, last, upto)
	}
	return nil
}
