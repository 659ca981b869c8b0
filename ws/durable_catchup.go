package ws

import (
	"context"
	"fmt"

	"github.com/messages-server/messages/ws/durable"
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
func (b *DurableBackend) Catchup(ctx context.Context, name string, from durable.Pos, maxBytes int64) (durable.Range, durable.Info, error) {
	st, err := b.state(ctx, name)
	if err != nil {
		return durable.Range{}, durable.Info{}, err
	}
	b.touch(ctx, name, st)
	snap, err := b.h.peek(ctx, name, from.Seq)
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
	err = b.walk(ctx, name, snap, from.Seq, snap.lastSeq, func(seq int64, data []byte) (bool, error) {
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
	start := durable.Pos{Epoch: snap.epoch, Seq: from.Seq}
	if holding {
		return durable.HeldRange(start, held), info, nil
	}
	rng := durable.Range{End: durable.Pos{Epoch: snap.epoch, Seq: end}}
	rng.Each = func(ctx context.Context, fn func([]byte) error) error {
		again, err := b.h.peek(ctx, name, from.Seq)
		if err != nil {
			return streamErr(err)
		}
		if again.epoch != snap.epoch {
			return fmt.Errorf("ws: stream %s changed epoch (%d to %d) during a read", name, snap.epoch, again.epoch)
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
func (b *DurableBackend) walk(ctx context.Context, name string, snap snapshot, after, upto int64, fn func(seq int64, data []byte) (bool, error)) error {
	page := int64(b.h.cfg.HistoryPage)
	last := after
	for last < min(upto, snap.fromStore) {
		rows, err := b.h.readRows(ctx, name, last, min(last+page, upto, snap.fromStore))
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
	eachBuffered(snap.buffered, func(seq, _ int64, data []byte) bool {
		switch {
		case seq <= last:
			return true
		case seq > upto:
			return false
		case seq != last+1:
			err = fmt.Errorf("ws: stream %s: buffered seq %d after %d", name, seq, last)
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
		return fmt.Errorf("ws: stream %s: read up to seq %d of %d", name, last, upto)
	}
	return nil
}
