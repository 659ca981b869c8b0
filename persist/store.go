package persist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures a Store. The zero value of every field except URL means
// its default.
type Config struct {
	// URL names the database, and its scheme the backend. Required.
	//
	// PostgreSQL: postgres://user:pass@host:port/db (or postgresql://) with
	// libpq query parameters (sslmode, search_path, application_name,
	// pool_max_conns, ...). It must be a URL, not a key=value string,
	// because the migrations use it too.
	//
	// SQLite: sqlite:relative/path.db, sqlite:/abs/path.db or
	// sqlite:///abs/path.db (sqlite3: too). The file and its directory are
	// created if missing; query parameters are go-sqlite3 connection
	// options (_cache_size=..., ...).
	URL string
	// Logger receives the migration log and store errors. Nil discards.
	Logger *slog.Logger
	// MaxConns is the size of the connection pool (on SQLite: of the read
	// pool; writes always use one connection). Zero means 16, or the URL's
	// pool_max_conns when it has one.
	MaxConns int32
	// SkipMigrations opens the store without creating the database or
	// running the migrations, for deployments that run them separately.
	// The zero value runs them.
	SkipMigrations bool
}

// defaultMaxConns is Config.MaxConns when neither it nor the URL set one:
// enough for a Writer's workers and for concurrent catch-up reads.
const defaultMaxConns = 16

// Store is the store of channels and messages, on PostgreSQL or on a SQLite
// file; the methods behave the same on both. It is safe for concurrent use.
// Create it with Open; the zero value is not usable.
type Store struct {
	pool *pgxpool.Pool // PostgreSQL; nil on SQLite
	lite *sqliteStore  // SQLite; nil on PostgreSQL
	log  *slog.Logger
	desc slog.Value // what LogValue shows
}

// Open opens the database that cfg.URL names, choosing the backend by the
// URL's scheme: postgres:// or postgresql:// for PostgreSQL, sqlite: or
// sqlite3: for a SQLite file. It creates the database if it does not exist,
// brings its schema up to date, opens the connections and checks that the
// database answers. Migrations of concurrent Opens on the same PostgreSQL
// database are serialised.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The scheme is cut out by hand: url.Parse errors quote the whole URL,
	// password included.
	scheme, _, found := strings.Cut(cfg.URL, ":")
	if !found || scheme == "" || strings.ContainsAny(scheme, "/?#@") {
		return nil, errors.New("persist: database URL has no scheme: use postgres://… or sqlite:…")
	}
	switch scheme = strings.ToLower(scheme); scheme {
	case "postgres", "postgresql":
		return openPostgres(ctx, cfg, log)
	case "sqlite", "sqlite3":
		s, err := openSQLite(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		s.desc = slog.GroupValue(slog.String("backend", "sqlite"), slog.String("path", s.lite.path))
		return s, nil
	default:
		return nil, fmt.Errorf("persist: unsupported database URL scheme %q: use postgres://… or sqlite:…", scheme)
	}
}

// LogValue describes the store for logs: the backend and the file, or the
// server and database (never the user or password).
func (s *Store) LogValue() slog.Value { return s.desc }

// openPostgres opens the PostgreSQL store at cfg.URL.
func openPostgres(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("persist: parse database url: %w", err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	} else if !hasParam(cfg.URL, "pool_max_conns") {
		pcfg.MaxConns = defaultMaxConns
	}
	if !cfg.SkipMigrations {
		u, err := createDatabase(ctx, cfg.URL, log)
		if err != nil {
			return nil, err
		}
		if err := migrate(ctx, pcfg.ConnConfig.Copy(), u, log); err != nil {
			return nil, err
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("persist: open pool: %w", err)
	}
	desc := url.URL{Scheme: "postgres", Host: pcfg.ConnConfig.Host, Path: "/" + pcfg.ConnConfig.Database}
	if pcfg.ConnConfig.Port != 0 {
		desc.Host = fmt.Sprintf("%s:%d", pcfg.ConnConfig.Host, pcfg.ConnConfig.Port)
		if strings.Contains(pcfg.ConnConfig.Host, ":") {
			desc.Host = fmt.Sprintf("[%s]:%d", pcfg.ConnConfig.Host, pcfg.ConnConfig.Port)
		}
	}
	s := &Store{pool: pool, log: log,
		desc: slog.GroupValue(slog.String("backend", "postgres"), slog.String("database", desc.String()))}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes every connection of the store, waiting for those in use to
// be released.
func (s *Store) Close() {
	if s.lite != nil {
		s.lite.close()
		return
	}
	s.pool.Close()
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.lite != nil {
		return s.lite.ping(ctx)
	}
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("persist: ping: %w", err)
	}
	return nil
}

// channelColumns are the columns scanChannel reads, in order.
const channelColumns = `id, epoch, created_at, closed_at, last_seq, gen_freq, gen_max`

// scanChannel reads one row of channelColumns.
func scanChannel(row pgx.Row) (Channel, error) {
	var (
		c      Channel
		closed *time.Time
		freq   *float64
		max    *int64
	)
	if err := row.Scan(&c.ID, &c.Epoch, &c.CreatedAt, &closed, &c.LastSeq, &freq, &max); err != nil {
		return Channel{}, err
	}
	if closed != nil {
		c.ClosedAt = *closed
	}
	if freq != nil && max != nil {
		c.Generator = &Generator{Freq: *freq, Max: *max}
	}
	return c, nil
}

// CreateChannel records a new open channel at epoch 1 with no messages. It
// returns ErrExists if the id is taken.
func (s *Store) CreateChannel(ctx context.Context, id string, gen *Generator) (Channel, error) {
	if s.lite != nil {
		return s.lite.createChannel(ctx, id, gen)
	}
	var freq *float64
	var max *int64
	if gen != nil {
		freq, max = &gen.Freq, &gen.Max
	}
	var c Channel
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		c, err = scanChannel(tx.QueryRow(ctx,
			`INSERT INTO channels (id, gen_freq, gen_max) VALUES ($1, $2, $3)
			 RETURNING `+channelColumns, id, freq, max))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx,
			`INSERT INTO channel_epochs (channel_id, epoch, start_seq) VALUES ($1, $2, 0)`,
			id, c.Epoch)
		return err
	})
	if err != nil {
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "23505" {
			return Channel{}, fmt.Errorf("persist: create channel %q: %w", id, ErrExists)
		}
		return Channel{}, fmt.Errorf("persist: create channel %q: %w", id, err)
	}
	return c, nil
}

// Channel returns the stored record of a channel, or ErrNotFound.
func (s *Store) Channel(ctx context.Context, id string) (Channel, error) {
	if s.lite != nil {
		return s.lite.channel(ctx, id)
	}
	c, err := scanChannel(s.pool.QueryRow(ctx,
		`SELECT `+channelColumns+` FROM channels WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Channel{}, fmt.Errorf("persist: channel %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Channel{}, fmt.Errorf("persist: channel %q: %w", id, err)
	}
	return c, nil
}

// Channels returns up to limit channels with id > after, ordered by id, so
// that passing the last id of a page as after gives the next page. A limit
// below 1 returns no channels.
func (s *Store) Channels(ctx context.Context, after string, limit int) ([]Channel, error) {
	if limit < 1 {
		return nil, nil
	}
	if s.lite != nil {
		return s.lite.channels(ctx, after, limit)
	}
	rows, err := s.pool.Query(ctx,
		`SELECT `+channelColumns+` FROM channels WHERE id > $1 ORDER BY id LIMIT $2`,
		after, limit)
	if err != nil {
		return nil, fmt.Errorf("persist: list channels: %w", err)
	}
	cs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Channel, error) {
		return scanChannel(row)
	})
	if err != nil {
		return nil, fmt.Errorf("persist: list channels: %w", err)
	}
	return cs, nil
}

// Messages returns up to limit stored messages of channel id with
// seq > after, in seq order. A channel that does not exist has no messages;
// a limit below 1 returns none.
func (s *Store) Messages(ctx context.Context, id string, after int64, limit int) ([]Message, error) {
	if limit < 1 {
		return nil, nil
	}
	if s.lite != nil {
		return s.lite.messages(ctx, id, after, limit)
	}
	rows, err := s.pool.Query(ctx,
		`SELECT seq, data, created_at FROM messages
		 WHERE channel_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
		id, after, limit)
	if err != nil {
		return nil, fmt.Errorf("persist: read messages of %q: %w", id, err)
	}
	defer rows.Close()
	var (
		ms []Message
		t  time.Time
	)
	for rows.Next() {
		var m Message
		if err := rows.Scan(&m.Seq, &m.Data, &t); err != nil {
			return nil, fmt.Errorf("persist: read messages of %q: %w", id, err)
		}
		m.Time = t.UnixMicro()
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("persist: read messages of %q: %w", id, err)
	}
	return ms, nil
}

// OpenEpoch starts a new epoch of a channel whose previous owner is gone:
// it increments the channel's epoch and records that the new epoch starts
// at the channel's last stored seq. It returns the updated record, or
// ErrNotFound.
func (s *Store) OpenEpoch(ctx context.Context, id string) (Channel, error) {
	if s.lite != nil {
		return s.lite.openEpoch(ctx, id)
	}
	var c Channel
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		c, err = scanChannel(tx.QueryRow(ctx,
			`UPDATE channels SET epoch = epoch + 1 WHERE id = $1 RETURNING `+channelColumns, id))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx,
			`INSERT INTO channel_epochs (channel_id, epoch, start_seq) VALUES ($1, $2, $3)`,
			id, c.Epoch, c.LastSeq)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Channel{}, fmt.Errorf("persist: open epoch of %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Channel{}, fmt.Errorf("persist: open epoch of %q: %w", id, err)
	}
	return c, nil
}

// Survived returns the highest seq that is the same in the given epoch and
// in the channel's current epoch: the seq the next epoch started at, or,
// for the current epoch, the channel's last stored seq. It returns 0 for an
// epoch the channel never had, and ErrNotFound if the channel does not
// exist.
func (s *Store) Survived(ctx context.Context, id string, epoch int64) (int64, error) {
	if s.lite != nil {
		return s.lite.survived(ctx, id, epoch)
	}
	var (
		current, last int64
		next          *int64
	)
	err := s.pool.QueryRow(ctx,
		`SELECT c.epoch, c.last_seq,
		        (SELECT min(e.start_seq) FROM channel_epochs e
		         WHERE e.channel_id = c.id AND e.epoch > $2)
		 FROM channels c WHERE c.id = $1`, id, epoch).Scan(&current, &last, &next)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("persist: survived of %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("persist: survived of %q: %w", id, err)
	}
	switch {
	case epoch < 1 || epoch > current:
		return 0, nil
	case next != nil:
		return *next, nil
	default:
		return last, nil
	}
}
