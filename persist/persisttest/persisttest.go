// Package persisttest gives tests a private, empty database: PostgreSQL
// (DatabaseURL) or a SQLite file (SQLiteURL).
//
// Tests of any package that need PostgreSQL call DatabaseURL and pass the
// URL to persist.Open. The server is found through the environment variable
// MESSAGES_TEST_DATABASE_URL, else at
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable. When it is
// unreachable the test is skipped with a loud message, unless the variable
// CI is set, in which case it fails.
//
// Creating a PostgreSQL database takes tens of milliseconds (it copies a
// template), so each URL names instead a fresh schema of its own in the
// shared database messages_test, through search_path: to the code under
// test it is an empty database, and it costs a few milliseconds.
package persisttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultURL is the server used when MESSAGES_TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// database is the database that holds the tests' schemas.
const database = "messages_test"

// prefix starts the name of every schema DatabaseURL makes; the Unix time
// of creation follows, so that schemas left behind by a killed test binary
// can be recognised and dropped a day later.
const prefix = "test_"

// staleAfter is the age past which a leftover test schema is dropped.
const staleAfter = 24 * time.Hour

// DatabaseURL returns the URL of a new, empty database for t, dropped (with
// every connection to it closed) when t and its subtests finish. It skips t
// if PostgreSQL is unreachable, or fails it if the environment variable CI
// is set. It is safe to call from parallel tests.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("MESSAGES_TEST_DATABASE_URL")
	if base == "" {
		base = DefaultURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("persisttest: MESSAGES_TEST_DATABASE_URL must be a postgres:// URL, got %q", base)
	}
	name := newName(t)
	test := *u
	test.Path = "/" + database
	q := test.Query()
	q.Set("search_path", name)
	q.Set("application_name", name)
	test.RawQuery = q.Encode()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := connectCreating(ctx, u, &test)
	if err != nil {
		unreachable(t, u, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+name); err != nil {
		t.Fatalf("persisttest: create schema: %v", err)
	}
	dropStale(ctx, t, conn)
	t.Cleanup(func() { drop(t, &test, name) })
	return test.String()
}

// SQLiteURL returns the sqlite: URL of a new database file in a temporary
// directory of t, removed when t and its subtests finish. The file does not
// exist yet: persist.Open creates it. It is safe to call from parallel
// tests.
func SQLiteURL(t testing.TB) string {
	t.Helper()
	u := url.URL{Scheme: "sqlite", Path: filepath.ToSlash(filepath.Join(t.TempDir(), "messages.db"))}
	return u.String()
}

// connectCreating connects to test, first creating its database through
// base if it does not exist yet.
func connectCreating(ctx context.Context, base, test *url.URL) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, test.String())
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); !ok || pgErr.Code != "3D000" { // invalid_catalog_name
		return conn, err
	}
	admin, err := pgx.Connect(ctx, base.String())
	if err != nil {
		return nil, err
	}
	_, err = admin.Exec(ctx, `CREATE DATABASE `+database)
	admin.Close(ctx)
	// 42P04 duplicate_database, 23505 unique_violation: a parallel test
	// binary created it first.
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && (pgErr.Code == "42P04" || pgErr.Code == "23505") {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	return pgx.Connect(ctx, test.String())
}

// newName returns a fresh schema name: prefix, Unix time, random suffix.
func newName(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("persisttest: random name: %v", err)
	}
	return prefix + strconv.FormatInt(time.Now().Unix(), 10) + "_" + hex.EncodeToString(b[:])
}

// unreachable skips or, under CI, fails t because the server at u does not
// answer.
func unreachable(t testing.TB, u *url.URL, err error) {
	t.Helper()
	msg := "persisttest: PostgreSQL at " + u.Redacted() + " is unreachable (" + err.Error() + ")." +
		" Start PostgreSQL or set MESSAGES_TEST_DATABASE_URL."
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " CI is set: failing.")
	}
	t.Skip("\n******** SKIPPED: " + msg + " ********")
}

// drop closes every connection opened with the test URL, then drops the
// schema with everything in it.
func drop(t testing.TB, test *url.URL, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := test.Query()
	q.Set("application_name", "persisttest")
	admin := *test
	admin.RawQuery = q.Encode()
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		t.Errorf("persisttest: drop %s: %v", name, err)
		return
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		 WHERE application_name = $1 AND pid <> pg_backend_pid()`, name); err != nil {
		t.Errorf("persisttest: drop %s: close connections: %v", name, err)
	}
	if _, err := conn.Exec(ctx, `DROP SCHEMA `+name+` CASCADE`); err != nil {
		t.Errorf("persisttest: drop %s: %v", name, err)
	}
}

// dropStale drops the test schemas older than staleAfter, left behind by
// test binaries that were killed before their cleanup ran.
func dropStale(ctx context.Context, t testing.TB, conn *pgx.Conn) {
	t.Helper()
	rows, err := conn.Query(ctx,
		`SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, prefix)
	if err != nil {
		t.Fatalf("persisttest: list schemas: %v", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("persisttest: list schemas: %v", err)
	}
	for _, n := range names {
		created, _, _ := strings.Cut(strings.TrimPrefix(n, prefix), "_")
		sec, err := strconv.ParseInt(created, 10, 64)
		if err != nil || time.Since(time.Unix(sec, 0)) < staleAfter {
			continue
		}
		// Best effort: a concurrent binary may be dropping it too.
		_, _ = conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{n}.Sanitize()+` CASCADE`)
	}
}
