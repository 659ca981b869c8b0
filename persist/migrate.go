package persist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/amacneil/dbmate/v2/pkg/dbmate"
	_ "github.com/amacneil/dbmate/v2/pkg/driver/postgres" // registers the postgres:// driver
	"github.com/jackc/pgx/v5"
	"github.com/lib/pq"

	"github.com/messages-server/messages/migrations"
)

// migrateLockKey is the PostgreSQL advisory lock held while migrating, so
// that servers starting together do not apply the same migration twice.
const migrateLockKey int64 = 0x6d7367_6d6967 // "msgmig"

// pgxOnly reports whether the URL parameter key is one that pgx
// understands and lib/pq, which the migrations use, would wrongly send to
// the server as a setting.
func pgxOnly(key string) bool {
	switch key {
	case "statement_cache_capacity", "description_cache_capacity", "default_query_exec_mode",
		"target_session_attrs", "service", "servicefile", "passfile", "sslcertmode",
		"sslnegotiation", "sslpassword", "min_protocol_version", "max_protocol_version",
		"channel_binding", "require_auth":
		return true
	}
	return strings.HasPrefix(key, "pool_")
}

// hasParam reports whether the URL has the query parameter key.
func hasParam(rawURL, key string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && u.Query().Has(key)
}

// migrationURLs returns the URLs to try, in order, for running the
// migrations through lib/pq: rawURL without the parameters only pgx knows,
// with a connect timeout taken from ctx, and with pgx's sslmode spelled the
// way lib/pq wants it. lib/pq has no "prefer" (pgx's default): it is tried
// as "require" then, if the server has no TLS, as "disable". "allow" is
// taken as "disable".
func migrationURLs(ctx context.Context, rawURL string) ([]*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("persist: database url must be postgres://user@host:port/database?params")
	}
	q := u.Query()
	for k := range q {
		if pgxOnly(k) {
			q.Del(k)
		}
	}
	if deadline, ok := ctx.Deadline(); ok && !q.Has("connect_timeout") {
		secs := math.Ceil(time.Until(deadline).Seconds())
		q.Set("connect_timeout", strconv.Itoa(max(1, int(secs))))
	}
	with := func(sslmode string) *url.URL {
		v := *u
		qq := url.Values{}
		for k, vs := range q {
			qq[k] = vs
		}
		qq.Set("sslmode", sslmode)
		v.RawQuery = qq.Encode()
		return &v
	}
	switch mode := q.Get("sslmode"); mode {
	case "", "prefer":
		return []*url.URL{with("require"), with("disable")}, nil
	case "allow":
		return []*url.URL{with("disable")}, nil
	default:
		return []*url.URL{with(mode)}, nil
	}
}

// newDBMate returns a dbmate instance for the embedded PostgreSQL
// migrations at u, logging to log.
func newDBMate(u *url.URL, log *slog.Logger) *dbmate.DB {
	db := dbmate.New(u)
	db.FS = migrations.FS
	db.MigrationsDir = []string{"postgres"}
	db.AutoDumpSchema = false
	db.Log = logWriter{log}
	return db
}

// createDatabase creates the database named by rawURL if it does not exist,
// and returns the URL the migrations should use. Like dbmate's
// CreateAndMigrate, it goes on without creating when it cannot tell whether
// the database exists (for example when the user may not list databases).
func createDatabase(ctx context.Context, rawURL string, log *slog.Logger) (*url.URL, error) {
	us, err := migrationURLs(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	for i, u := range us {
		drv, err := newDBMate(u, log).Driver()
		if err != nil {
			return nil, fmt.Errorf("persist: migrations driver: %w", err)
		}
		exists, err := drv.DatabaseExists()
		if errors.Is(err, pq.ErrSSLNotSupported) && i+1 < len(us) {
			continue
		}
		if err != nil || exists {
			return u, nil
		}
		if err := drv.CreateDatabase(); err != nil {
			// Another server may have created it meanwhile.
			if exists, err2 := drv.DatabaseExists(); err2 != nil || !exists {
				return nil, fmt.Errorf("persist: create database: %w", err)
			}
		}
		return u, nil
	}
	return us[len(us)-1], nil
}

// migrate applies the pending migrations at u, holding an advisory lock on
// a connection of its own (config) so that concurrent servers take turns.
// Closing that connection releases the lock whatever happens.
func migrate(ctx context.Context, config *pgx.ConnConfig, u *url.URL, log *slog.Logger) error {
	conn, err := pgx.ConnectConfig(ctx, config)
	if err != nil {
		return fmt.Errorf("persist: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLockKey); err != nil {
		return fmt.Errorf("persist: lock migrations: %w", err)
	}
	if err := newDBMate(u, log).Migrate(); err != nil {
		return fmt.Errorf("persist: migrate: %w", err)
	}
	return nil
}

// logWriter turns the lines dbmate prints into log records.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			w.log.Info("migrations", "out", string(line))
		}
	}
	return len(p), nil
}
