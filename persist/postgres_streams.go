package persist

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

func (p *postgres) stream(ctx context.Context, id string) (StreamState, error) {
	var exp, deleted *time.Time
	st, err := scanStream(p.pool.QueryRow(ctx, `SELECT `+streamColumns+` FROM channels WHERE id = $1`, id), &exp, &deleted)
	if errors.Is(err, pgx.ErrNoRows) {
		return StreamState{}, ErrNotFound
	}
	if err != nil {
		return StreamState{}, err
	}
	if exp != nil {
		st.ExpiresAt = exp.UTC()
	}
	st.Deleted = deleted != nil
	rows, err := p.pool.Query(ctx,
		`SELECT producer_id, epoch, seq FROM producers WHERE channel_id = $1 ORDER BY producer_id`, id)
	if err != nil {
		return st, err
	}
	st.Producers, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (ProducerState, error) {
		var ps ProducerState
		err := row.Scan(&ps.ID, &ps.Epoch, &ps.Seq)
		return ps, err
	})
	if len(st.Producers) == 0 {
		st.Producers = nil // as on SQLite
	}
	return st, err
}

func (p *postgres) saveStreamWrites(ctx context.Context, id, seq string, ps *ProducerState) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`UPDATE channels SET stream_seq = COALESCE($1, stream_seq) WHERE id = $2`, nullString(seq), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		if ps == nil {
			return nil
		}
		return pgStreamTx{tx}.upsertProducer(ctx, id, *ps)
	})
}

// pgStreamTx is a PostgreSQL transaction as writeStreamStates uses it.
type pgStreamTx struct{ tx pgx.Tx }

func (t pgStreamTx) setStreamSeq(ctx context.Context, id, seq string) error {
	_, err := t.tx.Exec(ctx, `UPDATE channels SET stream_seq = $1 WHERE id = $2`, seq, id)
	return err
}

func (t pgStreamTx) upsertProducer(ctx context.Context, id string, ps ProducerState) error {
	_, err := t.tx.Exec(ctx,
		`INSERT INTO producers (channel_id, producer_id, epoch, seq) VALUES ($1, $2, $3, $4)
		 ON CONFLICT (channel_id, producer_id) DO UPDATE
		   SET epoch = excluded.epoch, seq = excluded.seq, updated_at = now()
		   WHERE (excluded.epoch, excluded.seq) > (producers.epoch, producers.seq)`,
		id, ps.ID, ps.Epoch, ps.Seq)
	return err
}

func (p *postgres) markDeleted(ctx context.Context, id string) error {
	tag, err := p.pool.Exec(ctx, `UPDATE channels SET deleted_at = COALESCE(deleted_at, now()) WHERE id = $1`, id)
	if err == nil && tag.RowsAffected() == 0 {
		err = ErrNotFound
	}
	return err
}

func (p *postgres) forks(ctx context.Context, id string) (int, error) {
	var n int
	err := p.pool.QueryRow(ctx, `SELECT count(*) FROM channels WHERE forked_from = $1`, id).Scan(&n)
	return n, err
}

func (p *postgres) touchStream(ctx context.Context, id string) error {
	tag, err := p.pool.Exec(ctx, `UPDATE channels SET accessed_at = greatest(accessed_at, now()) WHERE id = $1`, id)
	if err == nil && tag.RowsAffected() == 0 {
		err = ErrNotFound
	}
	return err
}

func (p *postgres) streamIdle(ctx context.Context, id string) (time.Duration, error) {
	var us int64
	err := p.pool.QueryRow(ctx,
		`SELECT (extract(epoch FROM now() - accessed_at) * 1000000)::bigint FROM channels WHERE id = $1`, id).Scan(&us)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrNotFound
	}
	return time.Duration(us) * time.Microsecond, err
}
