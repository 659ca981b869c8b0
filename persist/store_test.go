package persist_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/migrations"
	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/persist/storetest"
)

// openStore opens a Store on a fresh PostgreSQL database, closed when t
// ends.
func openStore(t testing.TB) (*persist.Store, string) {
	t.Helper()
	u := persisttest.DatabaseURL(t)
	return storetest.Open(t, u), u
}

// msgs returns messages from..to of channel id, data "seq: id\n", each at
// the given time plus seq microseconds.
func msgs(id string, from, to int64, at time.Time) []persist.Message {
	var ms []persist.Message
	for seq := from; seq <= to; seq++ {
		ms = append(ms, persist.Message{
			Seq:  seq,
			Time: at.UnixMicro() + seq,
			Data: fmt.Appendf(nil, "%d: %s\n", seq, id),
		})
	}
	return ms
}

// checkMessages fails t unless the stored messages of id are exactly
// 1..last, as written by msgs.
func checkMessages(t testing.TB, s *persist.Store, id string, last int64) {
	t.Helper()
	got, err := s.Messages(t.Context(), id, 0, int(last)+10)
	if err != nil {
		t.Fatalf("Messages(%s): %v", id, err)
	}
	if int64(len(got)) != last {
		t.Fatalf("Messages(%s): %d messages, want %d", id, len(got), last)
	}
	want := msgs(id, 1, last, time.Unix(1764300000, 0))
	for i, m := range got {
		if m.Seq != want[i].Seq || m.Time != want[i].Time || !bytes.Equal(m.Data, want[i].Data) {
			t.Fatalf("Messages(%s)[%d] = %d %d %q, want %d %d %q",
				id, i, m.Seq, m.Time, m.Data, want[i].Seq, want[i].Time, want[i].Data)
		}
	}
	c, err := s.Channel(t.Context(), id)
	if err != nil {
		t.Fatalf("Channel(%s): %v", id, err)
	}
	if c.LastSeq != last {
		t.Fatalf("Channel(%s).LastSeq = %d, want %d", id, c.LastSeq, last)
	}
}

func TestOpenMigratesOnce(t *testing.T) {
	s, u := openStore(t)
	ctx := t.Context()
	if _, err := s.CreateChannel(ctx, "kept", nil); err != nil {
		t.Fatal(err)
	}
	// Open again, concurrently, without the server lock (as cluster nodes
	// do): the migrations are already applied, and the migrations' own
	// advisory lock keeps two starting servers from applying them twice.
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			s2, err := persist.Open(ctx, persist.Config{URL: u, SkipLock: true})
			if err == nil {
				_, err = s2.Channel(ctx, "kept")
				s2.Close()
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("second Open: %v", err)
		}
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	files, err := fs.Glob(migrations.FS, "postgres/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(files) {
		t.Fatalf("schema_migrations has %d rows (%v), want %d", n, err, len(files))
	}

	s3, err := persist.Open(ctx, persist.Config{URL: u, SkipMigrations: true, SkipLock: true})
	if err != nil {
		t.Fatalf("Open(SkipMigrations): %v", err)
	}
	s3.Close()
}

func TestOpenMigratesFreshSchemaConcurrently(t *testing.T) {
	u := persisttest.DatabaseURL(t)
	ctx := t.Context()
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			s, err := persist.Open(ctx, persist.Config{URL: u, SkipLock: true})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
}

func TestOpenCreatesDatabase(t *testing.T) {
	base, err := url.Parse(persisttest.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var b [6]byte
	rand.Read(b[:])
	name := "messages_test_create_" + hex.EncodeToString(b[:])
	u := *base
	u.Path = "/" + name
	q := u.Query()
	q.Del("search_path")
	q.Del("application_name")
	q.Del("sslmode") // pgx's default, prefer, must work for the migrations too
	u.RawQuery = q.Encode()
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), base.String())
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})

	s, err := persist.Open(ctx, persist.Config{URL: u.String()})
	if err != nil {
		t.Fatalf("Open(new database): %v", err)
	}
	defer s.Close()
	if _, err := s.CreateChannel(ctx, "c", nil); err != nil {
		t.Fatalf("CreateChannel in the new database: %v", err)
	}

	if _, err := persist.Open(ctx, persist.Config{URL: "host=127.0.0.1 user=postgres"}); err == nil {
		t.Fatal("Open(key=value string) succeeded, want an error")
	}
}
