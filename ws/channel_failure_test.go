package ws_test

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/ws/wire"
	"github.com/messages-server/messages/ws/wstest"
)

// TestChannelDeletedInDatabase deletes a channel's row in the database
// under a running server, on each backend. The next batch of that channel
// cannot be written: its subscriber gets "internal" and close 4500 (not a
// 1001 "shutting down"), the server goes on serving other channels, and
// the channel is unknown.
func TestChannelDeletedInDatabase(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			srv := wstest.Start(t, wstest.Options{PersistInterval: 5 * time.Millisecond, Backend: backend})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			createChannel(t, srv.URL, "doomed")
			createChannel(t, srv.URL, "kept")
			sub := dialRaw(ctx, t, srv.URL, "doomed", 0, "")
			if err := readUntilLive(ctx, sub); err != nil {
				t.Fatal(err)
			}
			deleteChannelRow(ctx, t, backend, srv.DatabaseURL, "doomed")
			appendMsg(t, srv.URL, "doomed", "into the void") // buffered: the actor still runs

			if err := sub.readUntil(ctx, 1); err != nil {
				t.Fatal(err)
			}
			f, err := sub.next(ctx)
			if err != nil || f.Type != wire.FrameError || f.Code != wire.CodeInternal {
				t.Fatalf("after the failed write: %+v %v, want an error frame with code %q", f, err, wire.CodeInternal)
			}
			_, _, err = sub.conn.Read(ctx)
			if websocket.CloseStatus(err) != wire.CloseInternal {
				t.Fatalf("closed with %v, want %d", err, wire.CloseInternal)
			}
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Reason == "" {
				t.Errorf("close %v has no reason", err)
			}
			appendMsg(t, srv.URL, "kept", "still here")
			if st, b := do(t, "POST", srv.URL+"/channels/doomed/messages", "text/plain", []byte("again")); st != http.StatusNotFound {
				t.Fatalf("append to the deleted channel: %d %s, want 404", st, b)
			}
		})
	}
}

// deleteChannelRow deletes channel id (and, by cascade, its messages and
// epochs) straight in the database, as an operator's mistake would.
func deleteChannelRow(ctx context.Context, t *testing.T, backend, dbURL, id string) {
	t.Helper()
	if backend == "postgres" {
		db, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(ctx)
		if _, err := db.Exec(ctx, `DELETE FROM channels WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		return
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+u.Path+"?_foreign_keys=1&_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `DELETE FROM channels WHERE id = ?`, id); err != nil {
		t.Fatal(err)
	}
}
