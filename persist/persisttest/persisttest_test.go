package persisttest_test

import (
	"context"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
)

func TestDatabaseURL(t *testing.T) {
	var u string
	var leftOpen *pgx.Conn
	t.Run("user", func(t *testing.T) {
		u = persisttest.DatabaseURL(t)
		other := persisttest.DatabaseURL(t)
		if u == other {
			t.Fatalf("two calls returned the same database %s", u)
		}
		var err error
		leftOpen, err = pgx.Connect(t.Context(), u)
		if err != nil {
			t.Fatal(err)
		}
		// The database is empty and writable.
		if _, err := leftOpen.Exec(t.Context(), `CREATE TABLE t (x int)`); err != nil {
			t.Fatal(err)
		}
		// leftOpen is not closed: the cleanup must cope.
	})
	ctx := context.Background()
	if leftOpen.Ping(ctx) == nil {
		t.Fatal("a connection to the dropped database still works")
	}
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`,
		parsed.Query().Get("search_path")).Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("the database is still there after the test (%d, %v)", n, err)
	}
}

func TestSQLiteURL(t *testing.T) {
	var u, other string
	t.Run("user", func(t *testing.T) {
		u, other = persisttest.SQLiteURL(t), persisttest.SQLiteURL(t)
		if u == other {
			t.Fatalf("two calls returned the same file %s", u)
		}
		s, err := persist.Open(t.Context(), persist.Config{URL: u})
		if err != nil {
			t.Fatalf("Open(%s): %v", u, err)
		}
		defer s.Close()
		if _, err := s.CreateChannel(t.Context(), "c", nil); err != nil {
			t.Fatal(err)
		}
	})
	parsed, err := url.Parse(u)
	if err != nil || parsed.Scheme != "sqlite" || !filepath.IsAbs(parsed.Path) {
		t.Fatalf("SQLiteURL = %q (%v), want sqlite:///absolute/path", u, err)
	}
	if _, err := os.Stat(parsed.Path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the database file is still there after the test: %v", err)
	}
}
