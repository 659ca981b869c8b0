package persist

// The batch writes of the PostgreSQL backend: one transaction per call of
// writeBatches, fenced as postgres_fence.go says.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// writeBatches implements backend.writeBatches. COPY is about twice as
// fast as an INSERT per row, but fails on a row that is already stored:
// then the batches were, at least in part, committed before, and the
// idempotent INSERT ... ON CONFLICT DO NOTHING redoes them. A transaction
// whose channels update waited too long for a row lock (see
// updateChannelsSQL) is done again with the rows locked in id order.
func (p *postgres) writeBatches(ctx context.Context, batches []*Batch, updates []channelUpdate) error {
	var skipStored, ordered bool
	for {
		err := p.writeTx(ctx, batches, updates, skipStored, ordered)
		switch pgErr, _ := errors.AsType[*pgconn.PgError](err); {
		case pgErr != nil && pgErr.Code == "23505" && !skipStored:
			skipStored = true
		case pgErr != nil && pgErr.Code == "55P03" && !ordered:
			ordered = true
		default:
			return err
		}
	}
}

// updateChannelsSQL closes channels, from arrays of ids, last seqs, closes
// and epochs, and records their last seq: what the transaction stores, or
// what is stored already. Only a transaction that closes a channel updates
// its row; an ordinary flush checks it (checkChannelsSQL). A closed channel
// takes no message past its last seq (a retry of what is stored passes). A
// batch of an epoch that is not the channel's any more is fenced: its
// writer lost the channel to another node.
//
// It locks the rows in whatever order its plan visits them, and runs under
// a lock timeout (lockWaitSQL) well below PostgreSQL's deadlock timeout:
// two transactions that lock several channels in different orders might
// wait for each other in a cycle, so one that waits longer than that gives
// up and is done again with updateChannelsOrderedSQL. A node's own writers
// never share a channel and a lease renewal never waits for a row while
// it holds another (see renewLeases), so that is rare; locking every row in
// id order first on every transaction would cost a second pass over the
// rows, as much again as the update.
const updateChannelsSQL = `UPDATE channels c SET
   last_seq = GREATEST(v.last_seq, ` + lastSeqSQL + `),
   closed_at = CASE WHEN v.close THEN coalesce(c.closed_at, now()) ELSE c.closed_at END
 FROM unnest($1::text[], $2::bigint[], $3::bool[], $4::bigint[]) AS v(id, last_seq, close, epoch)
 WHERE c.id = v.id
   AND (c.closed_at IS NULL OR v.last_seq <= c.last_seq)
   AND (v.epoch = 0 OR c.epoch = v.epoch)`

// updateChannelsOrderedSQL is updateChannelsSQL with the rows locked in id
// order first: transactions that lock their rows in one order never wait
// for each other in a cycle.
const updateChannelsOrderedSQL = `WITH l AS (
   SELECT id FROM channels WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE
 )
 UPDATE channels c SET
   last_seq = GREATEST(v.last_seq, ` + lastSeqSQL + `),
   closed_at = CASE WHEN v.close THEN coalesce(c.closed_at, now()) ELSE c.closed_at END
 FROM unnest($1::text[], $2::bigint[], $3::bool[], $4::bigint[]) AS v(id, last_seq, close, epoch)
 WHERE c.id = v.id AND c.id IN (SELECT id FROM l)
   AND (c.closed_at IS NULL OR v.last_seq <= c.last_seq)
   AND (v.epoch = 0 OR c.epoch = v.epoch)`

// lockWaitSQL bounds how long updateChannelsSQL waits for a row lock:
// past it the statement fails with lock_not_available (55P03), long before
// PostgreSQL's deadlock check (deadlock_timeout, 1 s by default) would
// fail one of the transactions of a cycle. resetLockWaitSQL ends the bound
// for the rest of the transaction.
const (
	lockWaitSQL      = `SET LOCAL lock_timeout = '50ms'`
	resetLockWaitSQL = `SET LOCAL lock_timeout TO DEFAULT`
)

// insertMessagesSQL inserts messages from arrays of channel ids, seqs,
// data and times, skipping those already stored.
const insertMessagesSQL = `INSERT INTO messages (channel_id, seq, data, created_at)
 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::timestamptz[])
 ON CONFLICT DO NOTHING`

// updateArrays returns the columns of updates, for updateChannelsSQL.
func updateArrays(updates []channelUpdate) (ids []string, lasts []int64, closes []bool, epochs []int64) {
	ids = make([]string, len(updates))
	lasts = make([]int64, len(updates))
	closes = make([]bool, len(updates))
	epochs = make([]int64, len(updates))
	for i, u := range updates {
		ids[i], lasts[i], closes[i], epochs[i] = u.id, u.last, u.close, u.epoch
	}
	return ids, lasts, closes, epochs
}

// messageArrays returns the columns of the messages of batches, for
// insertMessagesSQL.
func messageArrays(batches []*Batch) (chans []string, seqs []int64, data [][]byte, times []time.Time) {
	n := 0
	for _, b := range batches {
		n += b.Rows()
	}
	chans, seqs, data, times = make([]string, 0, n), make([]int64, 0, n), make([][]byte, 0, n), make([]time.Time, 0, n)
	for _, b := range batches {
		b.Each(func(m Message) bool {
			chans = append(chans, b.Channel)
			seqs = append(seqs, m.Seq)
			data = append(data, body(m.Data))
			times = append(times, time.UnixMicro(m.Time))
			return true
		})
	}
	return chans, seqs, data, times
}

// writeTx is one transaction of writeBatches: it takes the fence locks of
// the channels and checks them (see postgres_fence.go), updating only those
// it closes, with their rows locked in id order if ordered; then inserts
// the messages of batches with COPY, or, if skipStored, with an INSERT that
// skips the rows already stored.
func (p *postgres) writeTx(ctx context.Context, batches []*Batch, updates []channelUpdate, skipStored, ordered bool) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	passed, err := fenceAndUpdate(ctx, tx, updates, ordered)
	if err != nil {
		return fmt.Errorf("update channels: %w", err)
	}
	if passed != int64(len(updates)) {
		ids, _, _, _ := updateArrays(updates)
		return p.refused(ctx, tx, ids, updates)
	}
	if skipStored {
		err = insertBatches(ctx, tx, batches)
	} else {
		err = copyBatches(ctx, tx, batches)
	}
	if err != nil {
		return fmt.Errorf("insert messages: %w", err)
	}
	if err := writeStreamStates(ctx, pgStreamTx{tx}, batches); err != nil {
		return fmt.Errorf("stream state: %w", err)
	}
	if err := p.checkLockInTx(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// refused returns the error of a writeTx whose update of the channels ids
// did not change them all.
func (p *postgres) refused(ctx context.Context, tx pgx.Tx, ids []string, updates []channelUpdate) error {
	rows, err := tx.Query(ctx,
		`SELECT id, closed_at IS NOT NULL, `+lastSeqSQL+`, epoch FROM channels c WHERE id = ANY($1)`, ids)
	if err != nil {
		return fmt.Errorf("update channels: %w", err)
	}
	states := make(map[string]channelState, len(ids))
	var (
		id string
		st channelState
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &st.closed, &st.last, &st.epoch}, func() error {
		st.next = -1
		states[id] = st
		return nil
	})
	if err != nil {
		return fmt.Errorf("update channels: %w", err)
	}
	for _, u := range updates {
		st, ok := states[u.id]
		if !ok || u.epoch == 0 || st.epoch == u.epoch {
			continue
		}
		// Fenced: what the next epoch started from says whether an
		// earlier attempt of this batch committed before the take-over.
		if err := tx.QueryRow(ctx,
			`SELECT coalesce(min(start_seq), -1) FROM channel_epochs WHERE channel_id = $1 AND epoch > $2`,
			u.id, u.epoch).Scan(&st.next); err != nil {
			return fmt.Errorf("update channels: %w", err)
		}
		states[u.id] = st
	}
	return refused(updates, states)
}

// permanent: a data exception (class 22), an integrity constraint (23) or
// a program limit (54) fails again on a retry; the rest (connection lost,
// serialization failure, the server shutting down...) may pass.
func (p *postgres) permanent(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	if !ok {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23", "54":
		return true
	}
	return false
}

// copyBatches inserts the messages of batches with COPY.
func copyBatches(ctx context.Context, tx pgx.Tx, batches []*Batch) error {
	if !slices.ContainsFunc(batches, func(b *Batch) bool { return len(b.Messages) > 0 }) {
		return nil // only closes: spare the round trip
	}
	i, j, k := 0, -1, 0 // message k of Messages[j] of batches[i]
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"messages"},
		[]string{"channel_id", "seq", "data", "created_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if j >= 0 && k+1 < batches[i].runLen(j) {
				k++
			} else {
				j, k = j+1, 0
				for i < len(batches) && j >= len(batches[i].Messages) {
					i, j = i+1, 0
				}
				if i == len(batches) {
					return nil, nil
				}
			}
			b := batches[i]
			m := b.Messages[j]
			if b.Ends != nil && b.Ends[j] != nil {
				from := uint32(0)
				if k > 0 {
					from = b.Ends[j][k-1]
				}
				m = Message{Seq: m.Seq + int64(k), Time: m.Time, Data: m.Data[from:b.Ends[j][k]]}
			}
			return []any{b.Channel, m.Seq, body(m.Data), time.UnixMicro(m.Time)}, nil
		}))
	return err
}

// body returns data as it is stored: nil is an empty body, not NULL.
func body(data []byte) []byte {
	if data == nil {
		return []byte{}
	}
	return data
}

// insertBatches inserts the messages of batches that are not stored yet.
func insertBatches(ctx context.Context, tx pgx.Tx, batches []*Batch) error {
	chans, seqs, data, times := messageArrays(batches)
	if len(seqs) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, insertMessagesSQL, chans, seqs, data, times)
	return err
}
