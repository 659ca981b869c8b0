package persist

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

func (s *sqliteStore) stream(ctx context.Context, id string) (StreamState, error) {
	var exp, del sql.NullInt64
	st, err := scanStream(s.read.QueryRowContext(ctx, `SELECT `+streamColumns+` FROM channels WHERE id = ?`, id), &exp, &del)
	if errors.Is(err, sql.ErrNoRows) {
		return StreamState{}, ErrNotFound
	}
	if err != nil {
		return StreamState{}, err
	}
	st.Deleted = del.Valid
	if exp.Valid {
		st.ExpiresAt = time.UnixMicro(exp.Int64).UTC()
	}
	rows, err := s.read.QueryContext(ctx,
		`SELECT producer_id, epoch, seq FROM producers WHERE channel_id = ? ORDER BY producer_id`, id)
	if err != nil {
		return st, err
	}
	defer rows.Close()
	for rows.Next() {
		var ps ProducerState
		if err := rows.Scan(&ps.ID, &ps.Epoch, &ps.Seq); err != nil {
			return st, err
		}
		st.Producers = append(st.Producers, ps)
	}
	return st, rows.Err()
}

func (s *sqliteStore) saveStreamWrites(ctx context.Context, id, seq string, ps *ProducerState) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		err := execOne(ctx, tx, `UPDATE channels SET stream_seq = COALESCE(?, stream_seq) WHERE id = ?`, nullString(seq), id)
		if err != nil {
			return err
		}
		if ps == nil {
			return nil
		}
		return sqliteStreamTx{tx}.upsertProducer(ctx, id, *ps)
	})
}

func (s *sqliteStore) markDeleted(ctx context.Context, id string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		return execOne(ctx, tx, `UPDATE channels SET deleted_at = COALESCE(deleted_at, ?) WHERE id = ?`, time.Now().UnixMicro(), id)
	})
}

func (s *sqliteStore) forks(ctx context.Context, id string) (int, error) {
	var n int
	err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM channels WHERE forked_from = ?`, id).Scan(&n)
	return n, err
}

// sqliteStreamTx is a SQLite transaction as writeStreamStates uses it.
type sqliteStreamTx struct{ tx *sql.Tx }

func (t sqliteStreamTx) setStreamSeq(ctx context.Context, id, seq string) error {
	_, err := t.tx.ExecContext(ctx, `UPDATE channels SET stream_seq = ? WHERE id = ?`, seq, id)
	return err
}

func (t sqliteStreamTx) upsertProducer(ctx context.Context, id string, ps ProducerState) error {
	_, err := t.tx.ExecContext(ctx,
		`INSERT INTO producers (channel_id, producer_id, epoch, seq, updated_at) VALUES (?, ?, ?, ?, ?)
		 ON CONFLICT (channel_id, producer_id) DO UPDATE
		   SET epoch = excluded.epoch, seq = excluded.seq, updated_at = excluded.updated_at
		   WHERE (excluded.epoch, excluded.seq) > (producers.epoch, producers.seq)`,
		id, ps.ID, ps.Epoch, ps.Seq, time.Now().UnixMicro())
	return err
}

// execOne runs an update of channel id's row in tx, and returns
// ErrNotFound when it changed no row.
func execOne(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err == nil && n == 0 {
		err = ErrNotFound
	}
	return err
}

func (s *sqliteStore) touchStream(ctx context.Context, id string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		return execOne(ctx, tx, `UPDATE channels SET accessed_at = max(coalesce(accessed_at, 0), ?) WHERE id = ?`,
			time.Now().UnixMicro(), id)
	})
}

func (s *sqliteStore) streamIdle(ctx context.Context, id string) (time.Duration, error) {
	var at int64
	err := s.read.QueryRowContext(ctx,
		`SELECT coalesce(accessed_at, created_at) FROM channels WHERE id = ?`, id).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return time.Since(time.UnixMicro(at)), err
}
