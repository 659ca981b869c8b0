package persist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// postgres is the PostgreSQL backend of Store: a pgx connection pool, and
// the connection that holds the server lock.
type postgres struct {
	pool *pgxpool.Pool
	desc slog.Value
	// lockConfig and lockDesc take the lock again (see checkLock); nil
	// lockConfig: Config.SkipLock.
	lockConfig *pgx.ConnConfig
	lockDesc   string
	lockShared bool // cluster mode: the nodes share the lock, which keeps single servers out

	mu          sync.Mutex
	lock        *pgx.Conn // Guarded by mu; holds the server lock.
	lockWitness int64     // Guarded by mu; the witness key lock holds (see lockCheckSQL).

	// lostCh is closed by watchLock when another server took the lock;
	// stop ends watchLock, which closes watched when it returns.
	lostCh  chan struct{}
	stop    chan struct{}
	watched chan struct{}
}

// openPostgres opens the PostgreSQL database at cfg.URL, creating it and
// migrating it first unless cfg.SkipMigrations, and takes the server lock
// unless cfg.SkipLock.
func openPostgres(ctx context.Context, cfg Config) (*postgres, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("persist: parse database url: %w", err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	} else if !hasParam(cfg.URL, "pool_max_conns") {
		pcfg.MaxConns = defaultMaxConns
	}
	desc := url.URL{Scheme: "postgres", Host: pcfg.ConnConfig.Host, Path: "/" + pcfg.ConnConfig.Database}
	if pcfg.ConnConfig.Port != 0 {
		desc.Host = fmt.Sprintf("%s:%d", pcfg.ConnConfig.Host, pcfg.ConnConfig.Port)
		if strings.Contains(pcfg.ConnConfig.Host, ":") {
			desc.Host = fmt.Sprintf("[%s]:%d", pcfg.ConnConfig.Host, pcfg.ConnConfig.Port)
		}
	}
	p := &postgres{desc: slog.GroupValue(slog.String("backend", "postgres"), slog.String("database", desc.String()))}
	var u *url.URL
	if !cfg.SkipMigrations {
		if u, err = createDatabase(ctx, cfg.URL, cfg.Logger); err != nil {
			return nil, err
		}
	}
	// The lock comes before the migrations: a second server, maybe of a
	// newer version, must not migrate the database under a running one.
	if !cfg.SkipLock {
		p.lockConfig, p.lockDesc, p.lockShared = pcfg.ConnConfig.Copy(), desc.String(), cfg.Node != ""
		if p.lock, p.lockWitness, err = lockPostgres(ctx, p.lockConfig, p.lockDesc, p.lockShared); err != nil {
			return nil, err
		}
	}
	if !cfg.SkipMigrations {
		if err := migrate(ctx, pcfg.ConnConfig.Copy(), u, cfg.Logger); err != nil {
			p.close()
			return nil, err
		}
	}
	if p.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		p.close()
		return nil, fmt.Errorf("persist: open pool: %w", err)
	}
	if p.lock != nil {
		p.lostCh, p.stop, p.watched = make(chan struct{}), make(chan struct{}), make(chan struct{})
		go p.watchLock(cfg.Logger)
	}
	return p, nil
}

func (p *postgres) describe() slog.Value { return p.desc }

// ping checks the pool, and that the server lock is still held.
func (p *postgres) ping(ctx context.Context) error {
	if err := p.pool.Ping(ctx); err != nil {
		return err
	}
	return p.checkLock(ctx)
}

// close closes the pool, then the lock's connection, which releases it.
func (p *postgres) close() {
	if p.stop != nil {
		close(p.stop)
		<-p.watched
		p.stop = nil // close may be called again
	}
	if p.pool != nil {
		p.pool.Close()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lock != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.lock.Close(ctx)
		p.lock = nil
	}
}

// channelColumns are the columns scanChannel and scanSQLiteChannel read, in
// order.
const channelColumns = `id, epoch, created_at, closed_at, last_seq, gen_freq, gen_max, content_type, owner, lease_expires_at`

// channelSelectColumns is channelColumns for a SELECT from channels c, with
// the channel's live last seq (lastSeqSQL) for last_seq.
const channelSelectColumns = `id, epoch, created_at, closed_at, ` + lastSeqSQL + `, gen_freq, gen_max, content_type, owner, lease_expires_at`

// scanChannel reads one row of channelColumns or channelSelectColumns.
func scanChannel(row pgx.Row) (Channel, error) {
	var (
		c      Channel
		closed *time.Time
		freq   *float64
		max    *int64
		ct     *string
		owner  *string
		lease  *time.Time
	)
	if err := row.Scan(&c.ID, &c.Epoch, &c.CreatedAt, &closed, &c.LastSeq, &freq, &max, &ct, &owner, &lease); err != nil {
		return Channel{}, err
	}
	if owner != nil {
		c.Owner = *owner
	}
	if lease != nil {
		c.LeaseExpires = *lease
	}
	if ct != nil {
		c.ContentType = *ct
	}
	if closed != nil {
		c.ClosedAt = *closed
	}
	if freq != nil && max != nil {
		c.Generator = &Generator{Freq: *freq, Max: *max}
	}
	return c, nil
}

// createChannels inserts cs in one transaction of two statements, sent
// together in one round trip. The insert skips taken ids (ON CONFLICT DO
// NOTHING); what it returns says which ids were free.
func (p *postgres) createChannels(ctx context.Context, cs []newChannel, node string, lease time.Duration) ([]Channel, error) {
	col := columnsOf(cs)
	created := make(map[string]Channel, len(cs))
	// Both statements go in one pipeline, one round trip: queries sent
	// together before a Sync run in one implicit transaction.
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO channels (id, epoch, gen_freq, gen_max, content_type, ttl_seconds, expires_at,
		                       forked_from, fork_seq, fork_sub, owner, lease_expires_at)
		 SELECT n.id, GREATEST(n.epoch, f.epoch + 1), n.freq, n.gmax, n.ct, n.ttl, n.exp,
		        n.fork, n.fseq, n.fsub,
		        nullif($11, ''), CASE WHEN $11 <> '' THEN now() + $12 * interval '1 microsecond' END
		 FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::bigint[], $5::text[], $6::bigint[],
		             $7::timestamptz[], $8::text[], $9::bigint[], $10::bigint[])
		      WITH ORDINALITY AS n(id, epoch, freq, gmax, ct, ttl, exp, fork, fseq, fsub, ord)
		 CROSS JOIN epoch_floor f
		 ORDER BY n.ord
		 ON CONFLICT (id) DO NOTHING
		 RETURNING `+channelColumns,
		col.ids, col.epochs, col.freqs, col.maxes, col.cts, col.ttls, col.exps, col.forks, col.fseqs, col.fsubs,
		node, lease.Microseconds()).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				c, err := scanChannel(rows)
				if err != nil {
					return err
				}
				created[c.ID] = c
			}
			return rows.Err()
		})
	// The insert read the floor before it waited for a concurrent delete
	// of the same id, if there was one, to commit; this statement, with a
	// snapshot of its own, sees the floor that delete raised. The
	// channels this transaction inserted are those of ids without an
	// epoch yet: any other has its epochs since the commit that made it.
	b.Queue(`WITH mine AS (
		   SELECT c.id, c.epoch FROM channels c
		   WHERE c.id = ANY($1::text[])
		     AND NOT EXISTS (SELECT 1 FROM channel_epochs e WHERE e.channel_id = c.id)),
		 raised AS (
		   UPDATE channels c SET epoch = f.epoch + 1 FROM epoch_floor f, mine m
		   WHERE c.id = m.id AND c.epoch <= f.epoch RETURNING c.id, c.epoch)
		 INSERT INTO channel_epochs (channel_id, epoch, start_seq)
		 SELECT m.id, coalesce(r.epoch, m.epoch), 0 FROM mine m LEFT JOIN raised r ON r.id = m.id
		 RETURNING channel_id, epoch`, col.ids).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				var epoch int64
				if err := rows.Scan(&id, &epoch); err != nil {
					return err
				}
				c := created[id]
				c.Epoch = epoch
				created[id] = c
			}
			return rows.Err()
		})
	if err := p.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	out := make([]Channel, len(cs))
	for i, c := range cs {
		out[i] = created[c.id]
	}
	return out, nil
}

// creationColumns are the new channels of a creation transaction, column
// by column, for unnest: nil where a setting is unset (NULL).
type creationColumns struct {
	ids          []string
	epochs       []int64
	freqs        []*float64
	maxes        []*int64
	cts, forks   []*string
	ttls         []*int64
	exps         []*time.Time
	fseqs, fsubs []*int64
}

// columnsOf lays cs out in columns.
func columnsOf(cs []newChannel) creationColumns {
	n := len(cs)
	col := creationColumns{
		ids: make([]string, n), epochs: make([]int64, n), freqs: make([]*float64, n), maxes: make([]*int64, n),
		cts: make([]*string, n), forks: make([]*string, n), ttls: make([]*int64, n), exps: make([]*time.Time, n),
		fseqs: make([]*int64, n), fsubs: make([]*int64, n),
	}
	for i, c := range cs {
		col.ids[i], col.epochs[i] = c.id, max(c.cfg.Epoch, 1)
		if c.gen != nil {
			col.freqs[i], col.maxes[i] = &c.gen.Freq, &c.gen.Max
		}
		cfg := c.cfg
		if cfg.ContentType != "" {
			col.cts[i] = &cfg.ContentType
		}
		if cfg.TTL > 0 {
			col.ttls[i] = &cfg.TTL
		}
		if !cfg.ExpiresAt.IsZero() {
			col.exps[i] = &cfg.ExpiresAt
		}
		if cfg.ForkedFrom != "" {
			col.forks[i] = &cfg.ForkedFrom
		}
		if cfg.ForkSeq != 0 {
			col.fseqs[i] = &cfg.ForkSeq
		}
		if cfg.ForkSub != 0 {
			col.fsubs[i] = &cfg.ForkSub
		}
	}
	return col
}

func (p *postgres) channel(ctx context.Context, id string) (Channel, error) {
	c, err := scanChannel(p.pool.QueryRow(ctx,
		`SELECT `+channelSelectColumns+` FROM channels c WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Channel{}, ErrNotFound
	}
	return c, err
}

func (p *postgres) channels(ctx context.Context, after string, limit int) ([]Channel, error) {
	rows, err := p.pool.Query(ctx,
		`SELECT `+channelSelectColumns+` FROM channels c WHERE id > $1 ORDER BY id LIMIT $2`,
		after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, rowToChannel)
}

// rowToChannel reads one row of channelColumns, for pgx.CollectRows.
func rowToChannel(row pgx.CollectableRow) (Channel, error) { return scanChannel(row) }

func (p *postgres) messages(ctx context.Context, id string, after int64, limit int) ([]Message, error) {
	rows, err := p.pool.Query(ctx,
		`SELECT seq, data, created_at FROM messages
		 WHERE channel_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
		id, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		ms []Message
		t  time.Time
	)
	for rows.Next() {
		var m Message
		if err := rows.Scan(&m.Seq, &m.Data, &t); err != nil {
			return nil, err
		}
		m.Time = t.UnixMicro()
		ms = append(ms, m)
	}
	return ms, rows.Err()
}

// deleteChannel takes the channel's fence lock first, then deletes its row:
// a concurrent writeBatches of it either committed before (its messages
// are then deleted below) or finds no row and stores nothing. The floor
// comes last, so that deletes wait for each other only at the end.
func (p *postgres) deleteChannel(ctx context.Context, id string) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockFenceSQL, []int32{fenceBucket(id)}); err != nil {
			return err
		}
		var epoch int64
		err := tx.QueryRow(ctx, `DELETE FROM channels WHERE id = $1 RETURNING epoch`, id).Scan(&epoch)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return p.deleteRest(ctx, tx, []string{id}, epoch)
	})
}

// deleteRest deletes the messages of the channels ids, whose rows tx has
// deleted, and raises the epoch floor to epoch.
func (p *postgres) deleteRest(ctx context.Context, tx pgx.Tx, ids []string, epoch int64) error {
	if _, err := tx.Exec(ctx, `DELETE FROM messages WHERE channel_id = ANY($1)`, ids); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `UPDATE epoch_floor SET epoch = GREATEST(epoch, $1)`, epoch)
	return err
}

func (p *postgres) deleteClosedBefore(ctx context.Context, t time.Time, limit int) ([]string, error) {
	var ids []string
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		// The fence locks first, as every take-over and delete takes
		// them, then the rows (the reverse order deadlocked with a
		// take-over): the candidates are read without a lock. A write of
		// one of them (a retry of what is stored, the only kind a closed
		// channel takes) thus ends before its row and messages go.
		// SKIP LOCKED: a channel another transaction is deleting is left
		// to it.
		var cand []string
		rows, err := tx.Query(ctx, `SELECT id FROM channels WHERE closed_at < $1 ORDER BY closed_at, id LIMIT $2`, t, limit)
		if err == nil {
			cand, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil || len(cand) == 0 {
			return err
		}
		if _, err := tx.Exec(ctx, lockFenceSQL, fenceBucketsOf(cand)); err != nil {
			return err
		}
		rows, err = tx.Query(ctx,
			`DELETE FROM channels WHERE id IN (
			   SELECT id FROM channels WHERE id = ANY($3::text[]) AND closed_at < $1
			   ORDER BY closed_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
			 RETURNING id, epoch`, t, limit, cand)
		if err != nil {
			return err
		}
		var (
			id           string
			epoch, floor int64
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &epoch}, func() error {
			ids = append(ids, id)
			floor = max(floor, epoch)
			return nil
		})
		if err != nil || len(ids) == 0 {
			return err
		}
		return p.deleteRest(ctx, tx, ids, floor)
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

func (p *postgres) epochs(ctx context.Context, id string, epoch int64) (current, last int64, next *int64, err error) {
	err = p.pool.QueryRow(ctx,
		`SELECT c.epoch, `+lastSeqSQL+`,
		        (SELECT min(e.start_seq) FROM channel_epochs e
		         WHERE e.channel_id = c.id AND e.epoch > $2)
		 FROM channels c WHERE c.id = $1`, id, epoch).Scan(&current, &last, &next)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	return current, last, next, err
}
