package persist

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// takeOver implements backend.takeOver: one UPDATE that bumps the epoch
// and sets the owner and its lease, only when no other node holds a lease
// that has not expired, and records the new epoch in the same statement.
// Two nodes racing for one channel serialise on its row: the second sees
// the first's fresh lease and changes nothing.
func (p *postgres) takeOver(ctx context.Context, id, node string, lease time.Duration) (Channel, error) {
	c, err := scanChannel(p.pool.QueryRow(ctx,
		`WITH t AS (
		   UPDATE channels SET epoch = epoch + 1, owner = $2,
		          lease_expires_at = now() + $3 * interval '1 microsecond'
		   WHERE id = $1 AND (owner IS NULL OR owner = $2 OR lease_expires_at IS NULL
		                      OR lease_expires_at <= now())
		   RETURNING `+channelColumns+`
		 ), e AS (
		   INSERT INTO channel_epochs (channel_id, epoch, start_seq)
		   SELECT id, epoch, last_seq FROM t
		 )
		 SELECT * FROM t`, id, node, lease.Microseconds()))
	if !errors.Is(err, pgx.ErrNoRows) {
		return c, err
	}
	// Nothing changed: no such channel, or another node holds it.
	c, err = p.channel(ctx, id)
	if err != nil {
		return Channel{}, err
	}
	return Channel{}, &OwnedError{Channel: id, Owner: c.Owner, Expires: c.LeaseExpires}
}

// renewLeases implements backend.renewLeases. It locks the node's
// channels in id order, as writeTx does, so that a renewal and the node's
// own batches never deadlock.
func (p *postgres) renewLeases(ctx context.Context, node string, lease time.Duration) ([]string, error) {
	rows, err := p.pool.Query(ctx,
		`WITH n AS (
		   INSERT INTO nodes (id) VALUES ($1)
		   ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
		 ), l AS (
		   SELECT id FROM channels WHERE owner = $1 AND closed_at IS NULL
		   ORDER BY id FOR NO KEY UPDATE
		 )
		 UPDATE channels SET lease_expires_at = now() + $2 * interval '1 microsecond'
		 WHERE id IN (SELECT id FROM l) AND owner = $1 AND closed_at IS NULL
		 RETURNING id`, node, lease.Microseconds())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// orphans implements backend.orphans.
func (p *postgres) orphans(ctx context.Context, limit int) ([]string, error) {
	rows, err := p.pool.Query(ctx,
		`SELECT id FROM channels
		 WHERE closed_at IS NULL AND gen_freq IS NOT NULL
		   AND (lease_expires_at IS NULL OR lease_expires_at <= now())
		 ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// releaseLeases implements backend.releaseLeases.
func (p *postgres) releaseLeases(ctx context.Context, node string) error {
	_, err := p.pool.Exec(ctx,
		`UPDATE channels SET lease_expires_at = now()
		 WHERE owner = $1 AND closed_at IS NULL AND lease_expires_at > now()`, node)
	return err
}
