package persist

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/amacneil/dbmate/v2/pkg/dbmate"

	"github.com/messages-server/messages/migrations"
)

// sqliteBusyTimeout is how long, in milliseconds, a SQLite connection waits
// for a lock held by another connection (a checkpoint, or another process
// opening the file) before failing with SQLITE_BUSY.
const sqliteBusyTimeout = "10000"

// sqliteStore is the SQLite backend of Store: one database file in WAL
// mode, with a single writer connection and a pool of readers. Readers
// never wait for the writer in WAL mode, and with one writer connection
// the writes queue in database/sql instead of failing with SQLITE_BUSY.
// The lock keeps other processes off the file while the store is open. It
// is safe for concurrent use.
type sqliteStore struct {
	lock   *os.File  // <path>.lock, flocked while the store is open
	path   string    // the database file
	write  *sql.DB   // exactly one connection, for every write
	read   *sql.DB   // read-only connections, for every read
	insert *sql.Stmt // insertSQL(sqliteChunk), on write
	update *sql.Stmt // updateSQL(sqliteChunk), on write
}

// sqlitePath returns the file named by a sqlite: or sqlite3: URL, and its
// query parameters: sqlite:relative/path.db, sqlite:/abs/path.db or
// sqlite:///abs/path.db.
func sqlitePath(rawURL string) (string, url.Values, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", nil, fmt.Errorf("persist: parse sqlite url: %w", err)
	}
	var p string
	switch {
	case u.Opaque != "":
		if p, err = url.PathUnescape(u.Opaque); err != nil {
			return "", nil, fmt.Errorf("persist: parse sqlite url: %w", err)
		}
	case u.Host != "" || u.User != nil:
		return "", nil, fmt.Errorf("persist: sqlite url %q has a host: use sqlite:relative/path.db or sqlite:///absolute/path.db", rawURL)
	default:
		p = u.Path
	}
	switch {
	case p == "":
		return "", nil, fmt.Errorf("persist: sqlite url %q names no file: use sqlite:path/to/file.db", rawURL)
	case p == ":memory:" || strings.HasPrefix(p, "file:"):
		return "", nil, fmt.Errorf("persist: sqlite url %q: only a plain file path is supported", rawURL)
	case strings.ContainsRune(p, '?'):
		return "", nil, fmt.Errorf("persist: sqlite url %q: the file name may not contain '?'", rawURL)
	}
	return filepath.Clean(p), u.Query(), nil
}

// sqliteDSN returns the go-sqlite3 data source name for the file p: the
// URL's own parameters plus ours where it has none.
func sqliteDSN(p string, params url.Values, extra ...string) string {
	q := url.Values{}
	for k, vs := range params {
		q[k] = vs
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if !q.Has(extra[i]) {
			q.Set(extra[i], extra[i+1])
		}
	}
	return p + "?" + q.Encode()
}

// openSQLite locks, opens (creating it and its directory if needed) and
// migrates the SQLite database named by cfg.URL.
func openSQLite(ctx context.Context, cfg Config) (*sqliteStore, error) {
	p, params, err := sqlitePath(cfg.URL)
	if err != nil {
		return nil, err
	}
	if !sqliteBuilt {
		return nil, errors.New("persist: SQLite needs cgo, and this binary was built without it: " +
			"build with CGO_ENABLED=1 and a C compiler (gcc or clang), or use a postgres:// URL")
	}
	if dir := filepath.Dir(p); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("persist: create database directory: %w", err)
		}
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		abs = p
	}
	// The lock belongs to the file, whatever name it is opened by: a
	// second server given a symbolic link to it must find it locked.
	lockPath := abs + ".lock"
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		lockPath = real + ".lock"
	}
	s := &sqliteStore{path: abs}
	// The lock first: a second server must not even migrate the file.
	err = retryLock(ctx, func() (err error) {
		s.lock, err = lockFile(lockPath)
		return err
	})
	if errors.Is(err, errLockHeld) {
		return nil, lockedError("SQLite file " + abs + ", locked through " + lockPath)
	}
	if err != nil {
		return nil, fmt.Errorf("persist: lock %s: %w", lockPath, err)
	}
	if err := s.open(ctx, cfg, p, params); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// open opens the connections to the file p, migrating it first unless
// cfg.SkipMigrations.
func (s *sqliteStore) open(ctx context.Context, cfg Config, p string, params url.Values) error {
	// The writer sets WAL mode, which is recorded in the file, before
	// anything else opens it.
	var err error
	s.write, err = sql.Open("sqlite3", sqliteDSN(p, params,
		"_journal_mode", "WAL", "_synchronous", "NORMAL", "_busy_timeout", sqliteBusyTimeout,
		"_foreign_keys", "1", "_txlock", "immediate"))
	if err != nil {
		return fmt.Errorf("persist: open sqlite: %w", err)
	}
	s.write.SetMaxOpenConns(1)
	s.write.SetMaxIdleConns(1)
	s.write.SetConnMaxLifetime(0)
	s.write.SetConnMaxIdleTime(0)
	if err := s.write.PingContext(ctx); err != nil {
		return fmt.Errorf("persist: open sqlite %s: %w", p, err)
	}
	if !cfg.SkipMigrations {
		if err := migrateSQLite(p, cfg.Logger); err != nil {
			return err
		}
	}
	s.read, err = sql.Open("sqlite3", sqliteDSN(p, params,
		"_busy_timeout", sqliteBusyTimeout, "_query_only", "1"))
	if err != nil {
		return fmt.Errorf("persist: open sqlite: %w", err)
	}
	conns := int(cfg.MaxConns)
	if conns <= 0 {
		conns = defaultMaxConns
	}
	s.read.SetMaxOpenConns(conns)
	s.read.SetMaxIdleConns(conns)
	if s.insert, err = s.write.PrepareContext(ctx, insertSQL(sqliteChunk)); err != nil {
		return fmt.Errorf("persist: prepare insert: %w", err)
	}
	if s.update, err = s.write.PrepareContext(ctx, updateSQL(sqliteChunk)); err != nil {
		return fmt.Errorf("persist: prepare update: %w", err)
	}
	return nil
}

// migrateSQLite applies the pending sqlite/ migrations to the file p, on a
// connection of dbmate's own. The caller holds the file's lock.
func migrateSQLite(p string, log *slog.Logger) error {
	db := dbmate.New(&url.URL{Scheme: "sqlite", Opaque: p, RawQuery: "_busy_timeout=" + sqliteBusyTimeout})
	db.FS = migrations.FS
	db.MigrationsDir = []string{"sqlite"}
	db.AutoDumpSchema = false
	db.Log = logWriter{log}
	if err := db.Migrate(); err != nil {
		return fmt.Errorf("persist: migrate: %w", err)
	}
	return nil
}

// lost returns nil: the file lock lasts as long as the process holds its
// file open.
func (s *sqliteStore) lost() <-chan struct{} { return nil }

func (s *sqliteStore) describe() slog.Value {
	return slog.GroupValue(slog.String("backend", "sqlite"), slog.String("path", s.path))
}

// close closes what open opened, then releases the lock.
func (s *sqliteStore) close() {
	for _, st := range []*sql.Stmt{s.insert, s.update} {
		if st != nil {
			st.Close()
		}
	}
	for _, db := range []*sql.DB{s.read, s.write} {
		if db != nil {
			db.Close()
		}
	}
	s.lock.Close()
}

// ping reports whether both pools can reach the file.
func (s *sqliteStore) ping(ctx context.Context) error {
	if err := s.write.PingContext(ctx); err != nil {
		return err
	}
	return s.read.PingContext(ctx)
}

// scanSQLiteChannel reads one row of channelColumns.
func scanSQLiteChannel(row interface{ Scan(...any) error }) (Channel, error) {
	var (
		c         Channel
		created   int64
		closed    sql.NullInt64
		freq      sql.NullFloat64
		generated sql.NullInt64
		ct        sql.NullString
		owner     sql.NullString
		lease     sql.NullInt64
	)
	if err := row.Scan(&c.ID, &c.Epoch, &created, &closed, &c.LastSeq, &freq, &generated, &ct, &owner, &lease); err != nil {
		return Channel{}, err
	}
	c.ContentType = ct.String
	c.Owner = owner.String
	if lease.Valid {
		c.LeaseExpires = time.UnixMicro(lease.Int64)
	}
	c.CreatedAt = time.UnixMicro(created)
	if closed.Valid {
		c.ClosedAt = time.UnixMicro(closed.Int64)
	}
	if freq.Valid && generated.Valid {
		c.Generator = &Generator{Freq: freq.Float64, Max: generated.Int64}
	}
	return c, nil
}

// inTx runs f in a write transaction, committing if it returns nil.
func (s *sqliteStore) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// createChannels inserts cs in one transaction, skipping taken ids. A
// SQLite store is never in cluster mode (Open refuses it), so node is
// always "" and the channels have no owner.
func (s *sqliteStore) createChannels(ctx context.Context, cs []newChannel, _ string, _ time.Duration) ([]Channel, error) {
	out := make([]Channel, len(cs))
	now := time.Now().UnixMicro()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		clear(out)
		for i, c := range cs {
			var freq, genMax, exp any
			if c.gen != nil {
				freq, genMax = c.gen.Freq, c.gen.Max
			}
			cfg := c.cfg
			if !cfg.ExpiresAt.IsZero() {
				exp = cfg.ExpiresAt.UnixMicro()
			}
			ch, err := scanSQLiteChannel(tx.QueryRowContext(ctx,
				`INSERT INTO channels (id, created_at, gen_freq, gen_max, content_type, ttl_seconds, expires_at,
				                       forked_from, fork_seq, fork_sub, epoch)
				 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, max(?, (SELECT epoch + 1 FROM epoch_floor)))
				 ON CONFLICT (id) DO NOTHING
				 RETURNING `+channelColumns, c.id, now, freq, genMax, nullString(cfg.ContentType),
				nullTTL(cfg.TTL), exp, nullString(cfg.ForkedFrom), nullInt(cfg.ForkSeq), nullInt(cfg.ForkSub),
				max(cfg.Epoch, 1)))
			if errors.Is(err, sql.ErrNoRows) {
				continue // taken
			}
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO channel_epochs (channel_id, epoch, start_seq, started_at) VALUES (?, ?, 0, ?)`,
				c.id, ch.Epoch, now); err != nil {
				return err
			}
			out[i] = ch
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *sqliteStore) channel(ctx context.Context, id string) (Channel, error) {
	c, err := scanSQLiteChannel(s.read.QueryRowContext(ctx,
		`SELECT `+channelColumns+` FROM channels WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Channel{}, ErrNotFound
	}
	return c, err
}

func (s *sqliteStore) channels(ctx context.Context, after string, limit int) ([]Channel, error) {
	rows, err := s.read.QueryContext(ctx,
		`SELECT `+channelColumns+` FROM channels WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cs []Channel
	for rows.Next() {
		c, err := scanSQLiteChannel(rows)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, rows.Err()
}

func (s *sqliteStore) messages(ctx context.Context, id string, after int64, limit int) ([]Message, error) {
	rows, err := s.read.QueryContext(ctx,
		`SELECT seq, data, created_at FROM messages
		 WHERE channel_id = ? AND seq > ? ORDER BY seq LIMIT ?`, id, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ms []Message
	for rows.Next() {
		var m Message
		if err := rows.Scan(&m.Seq, &m.Data, &m.Time); err != nil {
			return nil, err
		}
		if m.Data == nil {
			m.Data = []byte{} // go-sqlite3 reads an empty BLOB as nil
		}
		ms = append(ms, m)
	}
	return ms, rows.Err()
}

// openEpochs opens the epochs of ids in one transaction, one UPDATE and
// one INSERT each: the writer connection runs one transaction at a time,
// so a batch saves the commits (each a sync of the file), not round trips.
// A SQLite store is never in cluster mode, so node is always "" and
// leases do not apply.
func (s *sqliteStore) openEpochs(ctx context.Context, ids []string, _ string, _ time.Duration) ([]outcome, error) {
	out := make([]outcome, len(ids))
	now := time.Now().UnixMicro()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		clear(out)
		for i, id := range ids {
			c, err := scanSQLiteChannel(tx.QueryRowContext(ctx,
				`UPDATE channels SET epoch = epoch + 1 WHERE id = ? RETURNING `+channelColumns, id))
			if errors.Is(err, sql.ErrNoRows) {
				out[i].err = ErrNotFound
				continue
			}
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO channel_epochs (channel_id, epoch, start_seq, started_at) VALUES (?, ?, ?, ?)`,
				id, c.Epoch, c.LastSeq, now); err != nil {
				return err
			}
			out[i].c = c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// deleteChannel needs no care for concurrent writes: the writer
// connection runs one transaction at a time.
func (s *sqliteStore) deleteChannel(ctx context.Context, id string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var epoch int64
		err := tx.QueryRowContext(ctx, `DELETE FROM channels WHERE id = ? RETURNING epoch`, id).Scan(&epoch)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return deleteRest(ctx, tx, []string{id}, epoch)
	})
}

// deleteRest deletes the messages of the channels ids, whose rows tx has
// deleted (their epochs go with them), and raises the epoch floor to
// epoch.
func deleteRest(ctx context.Context, tx *sql.Tx, ids []string, epoch int64) error {
	list, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx,
		`DELETE FROM messages WHERE channel_id IN (SELECT value FROM json_each(?))`, string(list)); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE epoch_floor SET epoch = max(epoch, ?)`, epoch)
	return err
}

func (s *sqliteStore) deleteClosedBefore(ctx context.Context, t time.Time, limit int) ([]string, error) {
	var ids []string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx,
			`DELETE FROM channels WHERE id IN (
			   SELECT id FROM channels WHERE closed_at < ?
			   ORDER BY closed_at, id LIMIT ?)
			 RETURNING id, epoch`, t.UnixMicro(), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		var floor int64
		for rows.Next() {
			var (
				id    string
				epoch int64
			)
			if err := rows.Scan(&id, &epoch); err != nil {
				return err
			}
			ids = append(ids, id)
			floor = max(floor, epoch)
		}
		if err := rows.Err(); err != nil || len(ids) == 0 {
			return err
		}
		return deleteRest(ctx, tx, ids, floor)
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// renewLeases and releaseLeases: cluster mode needs PostgreSQL, and Open
// refuses a SQLite store in cluster mode.
func (s *sqliteStore) renewLeases(context.Context, string, time.Duration) ([]string, error) {
	return nil, errSingleServer
}

func (s *sqliteStore) releaseLeases(context.Context, string) error { return errSingleServer }

func (s *sqliteStore) orphans(context.Context, int) ([]string, error) { return nil, errSingleServer }

func (s *sqliteStore) epochs(ctx context.Context, id string, epoch int64) (current, last int64, next *int64, err error) {
	err = s.read.QueryRowContext(ctx,
		`SELECT c.epoch, c.last_seq,
		        (SELECT min(e.start_seq) FROM channel_epochs e
		         WHERE e.channel_id = c.id AND e.epoch > ?2)
		 FROM channels c WHERE c.id = ?1`, id, epoch).Scan(&current, &last, &next)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	return current, last, next, err
}

// sqliteChunk is the most rows one INSERT or UPDATE statement of
// writeBatches carries: one statement per row would spend most of the
// time crossing from Go to C and back.
const sqliteChunk = 128

// insertSQL returns the statement that inserts rows messages, skipping
// those already stored.
func insertSQL(rows int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO messages (channel_id, seq, data, created_at) VALUES (?, ?, ?, ?)`)
	b.WriteString(strings.Repeat(`, (?, ?, ?, ?)`, rows-1))
	b.WriteString(` ON CONFLICT (channel_id, seq) DO NOTHING`)
	return b.String()
}

// updateSQL returns the statement that sets the last seq and the close
// mark of rows channels: parameter 1 is the time to close them at, then
// (id, last seq, close, epoch) per channel. A last seq never goes down, a
// closed channel keeps its first closing time, and a closed channel whose
// last seq is below the new one, or a channel at another epoch than a
// non-zero epoch, is not changed.
func updateSQL(rows int) string {
	var b strings.Builder
	b.WriteString(`UPDATE channels SET
		   last_seq = max(channels.last_seq, v.column2),
		   closed_at = CASE WHEN v.column3 THEN coalesce(channels.closed_at, ?1) ELSE channels.closed_at END
		 FROM (VALUES (?, ?, ?, ?)`)
	b.WriteString(strings.Repeat(`, (?, ?, ?, ?)`, rows-1))
	b.WriteString(`) AS v WHERE channels.id = v.column1
		   AND (channels.closed_at IS NULL OR v.column2 <= channels.last_seq)
		   AND (v.column4 = 0 OR channels.epoch = v.column4)`)
	return b.String()
}

// execChunks executes, in tx, full for every sqliteChunk rows of args
// (width values per row) and, for the rest, the statement rest(rows)
// returns. args may start with fixed values (prefix of them) that every
// statement takes first. It returns the number of rows changed.
func execChunks(ctx context.Context, tx *sql.Tx, full *sql.Stmt, rest func(rows int) string,
	prefix, width int, args []any) (int64, error) {
	var changed int64
	fixed, rows := args[:prefix], args[prefix:]
	chunk := make([]any, 0, prefix+width*sqliteChunk)
	for len(rows) > 0 {
		n := min(len(rows), width*sqliteChunk)
		chunk = append(append(chunk[:0], fixed...), rows[:n]...)
		var (
			res sql.Result
			err error
		)
		if n == width*sqliteChunk {
			res, err = tx.StmtContext(ctx, full).ExecContext(ctx, chunk...)
		} else {
			res, err = tx.ExecContext(ctx, rest(n/width), chunk...)
		}
		if err != nil {
			return changed, err
		}
		k, err := res.RowsAffected()
		if err != nil {
			return changed, err
		}
		changed += k
		rows = rows[n:]
	}
	return changed, nil
}

// writeBatches implements backend.writeBatches: one transaction on the
// writer connection that inserts the messages, skipping rows already
// stored, and updates the channels, both many rows per statement.
func (s *sqliteStore) writeBatches(ctx context.Context, batches []*Batch, updates []channelUpdate) error {
	var n int
	for _, b := range batches {
		n += b.Rows()
	}
	inserts := make([]any, 0, 4*n)
	for _, b := range batches {
		b.Each(func(m Message) bool {
			inserts = append(inserts, b.Channel, m.Seq, body(m.Data), m.Time)
			return true
		})
	}
	changes := make([]any, 0, 1+4*len(updates))
	changes = append(changes, time.Now().UnixMicro())
	for _, u := range updates {
		changes = append(changes, u.id, u.last, u.close, u.epoch)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		// The channels first: a closed one takes no message past its last
		// seq (a retry of what is stored passes).
		updated, err := execChunks(ctx, tx, s.update, updateSQL, 1, 4, changes)
		if err != nil {
			return fmt.Errorf("update channels: %w", err)
		}
		if updated != int64(len(updates)) {
			return s.refused(ctx, tx, updates)
		}
		if _, err := execChunks(ctx, tx, s.insert, insertSQL, 0, 4, inserts); err != nil {
			return fmt.Errorf("insert messages: %w", err)
		}
		if err := writeStreamStates(ctx, sqliteStreamTx{tx}, batches); err != nil {
			return fmt.Errorf("stream state: %w", err)
		}
		return nil
	})
}

// refused returns the error of a writeBatches transaction whose update of
// the channels did not change them all.
func (s *sqliteStore) refused(ctx context.Context, tx *sql.Tx, updates []channelUpdate) error {
	ids := make([]string, len(updates))
	for i, u := range updates {
		ids[i] = u.id
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx,
		`SELECT id, closed_at IS NOT NULL, last_seq, epoch FROM channels
		 WHERE id IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return fmt.Errorf("update channels: %w", err)
	}
	defer rows.Close()
	states := make(map[string]channelState, len(ids))
	for rows.Next() {
		var (
			id string
			st channelState
		)
		if err := rows.Scan(&id, &st.closed, &st.last, &st.epoch); err != nil {
			return fmt.Errorf("update channels: %w", err)
		}
		st.next = -1 // a single server's epochs never move under its batches
		states[id] = st
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("update channels: %w", err)
	}
	return refused(updates, states)
}

// permanent: see sqlitePermanent.
func (s *sqliteStore) permanent(err error) bool { return sqlitePermanent(err) }
