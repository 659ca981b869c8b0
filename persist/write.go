package persist

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// WriteBatches commits the messages of every batch, and each batch's
// channel's new last seq and Close mark, in one transaction: either all of
// it is stored or none. At most one batch per channel may be given. Rows
// already stored are skipped, so writing the same batches again (after a
// commit whose outcome was not known) is safe; a channel's last seq never
// goes down. If a batch's channel does not exist, nothing is stored and the
// error wraps ErrNotFound. WriteBatches implements BatchWriter and is safe
// for concurrent use.
func (s *Store) WriteBatches(ctx context.Context, batches []*Batch) error {
	if len(batches) == 0 {
		return nil
	}
	if s.lite != nil {
		return s.lite.writeBatches(ctx, batches)
	}
	var n int
	for _, b := range batches {
		n += len(b.Messages)
	}
	var (
		ids    = make([]string, 0, len(batches))
		lasts  = make([]int64, 0, len(batches))
		closes = make([]bool, 0, len(batches))
		index  = make(map[string]int, len(batches))
	)
	for _, b := range batches {
		// Tolerate two batches of one channel: one update row each.
		if i, ok := index[b.Channel]; ok {
			lasts[i], closes[i] = max(lasts[i], b.LastSeq()), closes[i] || b.Close
			continue
		}
		index[b.Channel] = len(ids)
		ids, lasts, closes = append(ids, b.Channel), append(lasts, b.LastSeq()), append(closes, b.Close)
	}
	// COPY is about twice as fast as an INSERT, but fails on a row that is
	// already stored: then the batches were, at least in part, committed
	// before, and the idempotent INSERT ... ON CONFLICT DO NOTHING redoes
	// them.
	err := s.writeBatches(ctx, batches, n, ids, lasts, closes, false)
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "23505" {
		err = s.writeBatches(ctx, batches, n, ids, lasts, closes, true)
	}
	return err
}

// writeBatches is one transaction of WriteBatches: it inserts the n
// messages of batches with COPY, or, if skipStored, with an INSERT that
// skips the rows already stored; then it updates the channels.
func (s *Store) writeBatches(ctx context.Context, batches []*Batch, n int,
	ids []string, lasts []int64, closes []bool, skipStored bool) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("persist: write batches: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	switch {
	case n == 0:
	case !skipStored:
		if err := copyBatches(ctx, tx, batches); err != nil {
			return fmt.Errorf("persist: write batches: copy messages: %w", err)
		}
	default:
		var (
			chans = make([]string, 0, n)
			seqs  = make([]int64, 0, n)
			data  = make([][]byte, 0, n)
			times = make([]time.Time, 0, n)
		)
		for _, b := range batches {
			for _, m := range b.Messages {
				chans = append(chans, b.Channel)
				seqs = append(seqs, m.Seq)
				data = append(data, m.Data)
				times = append(times, time.UnixMicro(m.Time))
			}
		}
		_, err = tx.Exec(ctx,
			`INSERT INTO messages (channel_id, seq, data, created_at)
			 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::timestamptz[])
			 ON CONFLICT DO NOTHING`,
			chans, seqs, data, times)
		if err != nil {
			return fmt.Errorf("persist: write batches: insert messages: %w", err)
		}
	}
	tag, err := tx.Exec(ctx,
		`UPDATE channels c SET
		   last_seq = GREATEST(c.last_seq, v.last_seq),
		   closed_at = CASE WHEN v.close THEN coalesce(c.closed_at, now()) ELSE c.closed_at END
		 FROM unnest($1::text[], $2::bigint[], $3::bool[]) AS v(id, last_seq, close)
		 WHERE c.id = v.id`,
		ids, lasts, closes)
	if err != nil {
		return fmt.Errorf("persist: write batches: update channels: %w", err)
	}
	if tag.RowsAffected() != int64(len(ids)) {
		return fmt.Errorf("persist: write batches: %d of %d channels: %w",
			len(ids)-int(tag.RowsAffected()), len(ids), ErrNotFound)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("persist: write batches: commit: %w", err)
	}
	return nil
}

// copyBatches inserts the messages of batches with COPY.
func copyBatches(ctx context.Context, tx pgx.Tx, batches []*Batch) error {
	i, j := 0, -1
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"messages"},
		[]string{"channel_id", "seq", "data", "created_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			j++
			for i < len(batches) && j >= len(batches[i].Messages) {
				i, j = i+1, 0
			}
			if i == len(batches) {
				return nil, nil
			}
			m := batches[i].Messages[j]
			return []any{batches[i].Channel, m.Seq, m.Data, time.UnixMicro(m.Time)}, nil
		}))
	return err
}
