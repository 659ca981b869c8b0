package persist_test

import (
	"bytes"
	"database/sql"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
)

func TestOpenSchemes(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"mysql://root@localhost/messages", `persist: unsupported database URL scheme "mysql": use postgres://… or sqlite:…`},
		{"./data/messages.db", "persist: database URL has no scheme"},
		{"", "persist: database URL has no scheme"},
		{"sqlite://host/x.db", "has a host"},
	} {
		s, err := persist.Open(t.Context(), persist.Config{URL: tc.url})
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want %q", tc.url, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) error = %q, want %q", tc.url, err, tc.want)
		}
	}
}

// TestSQLiteOpenCreatesFile checks that Open creates the file and its
// directories, in WAL mode, and that the store describes itself in logs.
func TestSQLiteOpenCreatesFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	file := filepath.Join(dir, "m.db")
	var logs bytes.Buffer
	s, err := persist.Open(t.Context(), persist.Config{
		URL: "sqlite://" + file, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("database file: %v", err)
	}
	if !strings.Contains(logs.String(), "20261128000000_init.sql") {
		t.Errorf("migration log = %q, want the applied migration", logs.String())
	}
	logs.Reset()
	slog.New(slog.NewTextHandler(&logs, nil)).Info("serving", "store", s)
	if want := "store.backend=sqlite store.path=" + file; !strings.Contains(logs.String(), want) {
		t.Errorf("log = %q, want %q", logs.String(), want)
	}

	db, err := sql.Open("sqlite3", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

// TestPostgresLogValue checks that the store's description never carries
// the password of its URL.
func TestPostgresLogValue(t *testing.T) {
	u, err := url.Parse(persisttest.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "s3cret") // trust auth ignores it
	s, err := persist.Open(t.Context(), persist.Config{URL: u.String()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("serving", "store", s)
	if !strings.Contains(logs.String(), "store.backend=postgres store.database=postgres://") ||
		strings.Contains(logs.String(), "s3cret") || strings.Contains(logs.String(), "@") || strings.Contains(logs.String(), "search_path") {
		t.Fatalf("log = %q, want backend and database without user or parameters", logs.String())
	}
}

// TestOpenSchemeAliases opens a store through the other spellings of each
// scheme: postgresql:// (libpq's) and sqlite3:.
func TestOpenSchemeAliases(t *testing.T) {
	pg := persisttest.DatabaseURL(t)
	for i, u := range []string{
		"postgresql://" + strings.TrimPrefix(pg, "postgres://"),
		"POSTGRESQL://" + strings.TrimPrefix(pg, "postgres://"),
		"sqlite3:" + filepath.Join(t.TempDir(), "three.db"),
		"sqlite3://" + filepath.Join(t.TempDir(), "abs.db"),
	} {
		s, err := persist.Open(t.Context(), persist.Config{URL: u})
		if err != nil {
			t.Fatalf("Open(%s): %v", u, err)
		}
		if _, err := s.CreateChannel(t.Context(), "c"+strconv.Itoa(i), nil); err != nil {
			t.Errorf("CreateChannel through %s: %v", u, err)
		}
		s.Close()
	}
}
