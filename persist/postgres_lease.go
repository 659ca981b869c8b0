package persist

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// openEpochs implements backend.openEpochs with one statement after the
// fence locks of ids (see postgres_fence.go): it locks the rows of ids in
// id order, so that two nodes taking over overlapping
// sets of channels wait for each other instead of deadlocking (in cluster
// mode only the rows no other node holds a live lease on: a channel
// another node owns is answered at once, never waited for while its owner
// writes it); bumps the
// epoch of each (in cluster mode setting the owner and its lease, only
// where no other node holds a lease that has not expired); and records
// the new epochs. Two nodes racing for one channel serialise on its row:
// the second sees the first's fresh lease and changes nothing. The new
// epoch starts at the channel's last seq, which the row records from then
// on. The ids it did not change are then read: missing, or held by
// another node.
func (p *postgres) openEpochs(ctx context.Context, ids []string, node string, lease time.Duration) ([]outcome, error) {
	// Both statements in one round trip and one implicit transaction: the
	// fence locks, exclusive, wait for every write of these channels to
	// end; the statement after them reads the last seqs those wrote.
	var opened []Channel
	b := &pgx.Batch{}
	b.Queue(lockFenceSQL, fenceBucketsOf(ids))
	b.Queue(openEpochsSQL, ids, node, lease.Microseconds()).Query(func(rows pgx.Rows) (err error) {
		opened, err = pgx.CollectRows(rows, rowToChannel)
		return err
	})
	if err := p.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	out := make([]outcome, len(ids))
	byID := make(map[string]Channel, len(opened))
	for _, c := range opened {
		byID[c.ID] = c
	}
	var rest []string
	for i, id := range ids {
		if c, ok := byID[id]; ok {
			out[i].c = c
		} else {
			rest = append(rest, id)
		}
	}
	if len(rest) == 0 {
		return out, nil
	}
	// The statement committed: from here on an error is the outcome of
	// the ids it did not change, never of the whole batch, which must not
	// be written again.
	rows, err := p.pool.Query(ctx, `SELECT `+channelColumns+` FROM channels WHERE id = ANY($1::text[])`, rest)
	var held []Channel
	if err == nil {
		held, err = pgx.CollectRows(rows, rowToChannel)
	}
	holders := make(map[string]Channel, len(held))
	for _, c := range held {
		holders[c.ID] = c
	}
	for i, id := range ids {
		if _, ok := byID[id]; ok {
			continue
		}
		if c, ok := holders[id]; err != nil {
			out[i].err = err
		} else if ok {
			out[i].err = &OwnedError{Channel: id, Owner: c.Owner, Expires: c.LeaseExpires}
		} else {
			out[i].err = ErrNotFound
		}
	}
	return out, nil
}

// openEpochsSQL is the statement of openEpochs: $1 the ids, $2 the node
// ("" in single-server mode, which ignores leases), $3 the lease in
// microseconds.
const openEpochsSQL = `WITH l AS MATERIALIZED (
   SELECT id AS lid FROM channels
   WHERE id = ANY($1::text[]) AND ($2::text = '' OR owner IS NULL OR owner = $2 OR lease_expires_at IS NULL
                                   OR lease_expires_at <= now())
   ORDER BY id FOR NO KEY UPDATE
 ), t AS (
   UPDATE channels c SET epoch = epoch + 1,
          last_seq = ` + lastSeqSQL + `,
          owner = CASE WHEN $2::text = '' THEN owner ELSE $2 END,
          lease_expires_at = CASE WHEN $2 = '' THEN lease_expires_at
                                  ELSE now() + $3 * interval '1 microsecond' END
   FROM l
   WHERE id = l.lid AND ($2 = '' OR owner IS NULL OR owner = $2 OR lease_expires_at IS NULL
                         OR lease_expires_at <= now())
   RETURNING ` + channelColumns + `
 ), e AS (
   INSERT INTO channel_epochs (channel_id, epoch, start_seq)
   SELECT id, epoch, last_seq FROM t
 )
 SELECT * FROM t`

// renewLeases implements backend.renewLeases. It never waits for a row
// lock while it holds another, so it cannot deadlock with the node's own
// batch writes, whatever order those lock their channels in: the first
// statement renews every row that is not locked at that moment and skips
// the others (SKIP LOCKED); then, while some remain, one statement waits
// for the first of them alone and the next renews, again without waiting,
// every other that has been unlocked meanwhile. A channel locked by a write
// is thus renewed once that write commits, not left to lapse.
func (p *postgres) renewLeases(ctx context.Context, node string, lease time.Duration) ([]string, error) {
	us := lease.Microseconds()
	renewed, locked, err := p.renewUnlocked(ctx, renewLeasesSQL, node, us, nil)
	if err != nil {
		return nil, err
	}
	for len(locked) > 0 {
		var id string
		err := p.pool.QueryRow(ctx, renewLeaseSQL, node, us, locked[0]).Scan(&id)
		switch {
		case err == nil:
			renewed = append(renewed, id)
		case !errors.Is(err, pgx.ErrNoRows): // no rows: not this node's any more, or closed
			return nil, err
		}
		if locked = locked[1:]; len(locked) == 0 {
			break
		}
		var more []string
		if more, locked, err = p.renewUnlocked(ctx, renewSomeLeasesSQL, node, us, locked); err != nil {
			return nil, err
		}
		renewed = append(renewed, more...)
	}
	return renewed, nil
}

// renewUnlocked runs q, renewLeasesSQL or renewSomeLeasesSQL, and returns
// the channels it renewed and those it skipped because another
// transaction held their row.
func (p *postgres) renewUnlocked(ctx context.Context, q, node string, us int64, ids []string) (renewed, locked []string, err error) {
	args := []any{node, us}
	if ids != nil {
		args = append(args, ids)
	}
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	var (
		id string
		ok bool
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &ok}, func() error {
		if ok {
			renewed = append(renewed, id)
		} else {
			locked = append(locked, id)
		}
		return nil
	})
	return renewed, locked, err
}

// renewLeasesTemplate renews, without waiting for any row lock, the leases
// of the open channels of node $1 (among the ids $3, if SOME is replaced
// by that condition) to $2 microseconds from now, and returns each of
// those channels with true if it renewed it, false if its row was locked.
// PREFIX may add a CTE.
const renewLeasesTemplate = `WITH PREFIX l AS (
   SELECT id FROM channels WHERE owner = $1 AND closed_at IS NULL SOME
   FOR NO KEY UPDATE SKIP LOCKED
 ), u AS (
   UPDATE channels c SET lease_expires_at = now() + $2 * interval '1 microsecond'
   FROM l WHERE c.id = l.id
   RETURNING c.id
 )
 SELECT id, true FROM u
 UNION ALL
 SELECT id, false FROM channels
 WHERE owner = $1 AND closed_at IS NULL SOME AND id NOT IN (SELECT id FROM l)`

var (
	// renewLeasesSQL is renewLeasesTemplate for every channel of the node,
	// recording its heartbeat too.
	renewLeasesSQL = strings.NewReplacer("PREFIX", `n AS (
   INSERT INTO nodes (id) VALUES ($1)
   ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
 ),`, "SOME", "").Replace(renewLeasesTemplate)
	// renewSomeLeasesSQL is renewLeasesTemplate for the channels $3.
	renewSomeLeasesSQL = strings.NewReplacer("PREFIX", "", "SOME", "AND id = ANY($3::text[])").Replace(renewLeasesTemplate)
)

// renewLeaseSQL renews the lease of channel $3, if node $1 holds it and
// it is open, waiting for its row if another transaction holds it.
const renewLeaseSQL = `UPDATE channels SET lease_expires_at = now() + $2 * interval '1 microsecond'
 WHERE id = $3 AND owner = $1 AND closed_at IS NULL
 RETURNING id`

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
