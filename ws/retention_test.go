package ws_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wstest"
)

// gatedRetention holds the hub's first DeleteClosedBefore that has work to
// do until release is closed.
type gatedRetention struct {
	hub.Store
	armed   chan struct{} // closed by the test once the data is in place
	entered chan struct{} // closed when a call is held
	release chan struct{}
	once    sync.Once
}

func (g *gatedRetention) DeleteClosedBefore(ctx context.Context, t time.Time, limit int) ([]string, error) {
	select {
	case <-g.armed:
		g.once.Do(func() {
			close(g.entered)
			select {
			case <-g.release:
			case <-ctx.Done():
			}
		})
	default:
	}
	return g.Store.DeleteClosedBefore(ctx, t, limit)
}

// TestRetention deletes the channels closed longer ago than the retention,
// in batches, on each backend, while a producer appends to an open channel:
// appends go on (and are persisted) while a retention batch is held in the
// store, every append succeeds while the batches run, the channels closed
// recently and the open one are untouched, and the metric counts the
// deleted ones.
func TestRetention(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			gate := &gatedRetention{armed: make(chan struct{}), entered: make(chan struct{}), release: make(chan struct{})}
			srv := wstest.Start(t, wstest.Options{
				Backend: backend, PersistInterval: 5 * time.Millisecond,
				Retention: hub.RetentionConfig{After: time.Hour, Batch: 10, Pause: 20 * time.Millisecond, Interval: 5 * time.Millisecond},
				Store:     func(s hub.Store) hub.Store { gate.Store = s; return gate },
			})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			const old, recent, msgs = 45, 5, 50
			for i := range old + recent {
				id := fmt.Sprintf("old-%02d", i)
				if i >= old {
					id = fmt.Sprintf("recent-%d", i)
				}
				writeClosed(ctx, t, srv.Store, id, msgs)
			}
			createChannel(t, srv.URL, "live")
			// Closed two hours ago, as far as retention can tell.
			execSQL(ctx, t, backend, srv.DatabaseURL,
				`UPDATE channels SET closed_at = closed_at - interval '2 hours' WHERE id LIKE 'old-%'`,
				`UPDATE channels SET closed_at = closed_at - 7200000000 WHERE id LIKE 'old-%'`)
			close(gate.armed)
			within(t, gate.entered, "a retention batch")

			// Retention is held in the store: appends neither wait for it
			// nor for its connection.
			seq := int64(0)
			for i := range 20 {
				st, b := do(t, "POST", srv.URL+"/channels/live/messages?wait=persisted", "text/plain", []byte(fmt.Sprint(i)))
				if st != http.StatusOK {
					t.Fatalf("append while retention is held: %d %s", st, b)
				}
				seq++
			}
			close(gate.release)

			deleted := func() float64 { return metricValue(t, srv, "messages_channels_deleted_total") }
			during, slowest := 0, time.Duration(0)
			for deleted() < old && ctx.Err() == nil && seq < 100_000 {
				start := time.Now()
				appendMsg(t, srv.URL, "live", fmt.Sprint(seq))
				slowest = max(slowest, time.Since(start))
				seq++
				if n := deleted(); n > 0 && n < old {
					during++
				}
			}
			if got := deleted(); got != old {
				t.Fatalf("messages_channels_deleted_total = %v, want %d", got, old)
			}
			if during == 0 {
				t.Errorf("no append completed while the retention batches ran")
			}
			t.Logf("%d appends while retention ran, slowest %v", during, slowest)

			for i := range old {
				id := fmt.Sprintf("old-%02d", i)
				if _, err := srv.Store.Channel(ctx, id); !errors.Is(err, persist.ErrNotFound) {
					t.Fatalf("Channel(%s) = %v, want ErrNotFound", id, err)
				}
				if ms, err := srv.Store.Messages(ctx, id, 0, 1); err != nil || len(ms) != 0 {
					t.Fatalf("messages of %s left: %d (%v)", id, len(ms), err)
				}
			}
			for i := old; i < old+recent; i++ {
				if c, err := srv.Store.Channel(ctx, fmt.Sprintf("recent-%d", i)); err != nil || c.LastSeq != msgs {
					t.Fatalf("recently closed channel: %+v, %v", c, err)
				}
			}
			wstest.WaitFor(t, 10*time.Second, "every append persisted", func() bool {
				c, err := srv.Store.Channel(ctx, "live")
				return err == nil && c.LastSeq == seq
			})
			if got := historyData(t, srv.URL, "live"); len(got) != int(min(seq, 100)) || got[0] != "0" {
				t.Fatalf("history of the open channel starts %q (%d messages), want 0.. (%d)", got[:min(3, len(got))], len(got), min(seq, 100))
			}
		})
	}
}

// writeClosed stores channel id with n messages, closed.
func writeClosed(ctx context.Context, t testing.TB, s *persist.Store, id string, n int64) {
	t.Helper()
	if _, err := s.CreateChannel(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	b := &persist.Batch{Channel: id, Close: true}
	for seq := int64(1); seq <= n; seq++ {
		b.Messages = append(b.Messages, persist.Message{Seq: seq, Time: time.Now().UnixMicro(), Data: []byte(strings.Repeat("x", 100))})
	}
	if err := s.WriteBatches(ctx, []*persist.Batch{b}); err != nil {
		t.Fatal(err)
	}
}

// execSQL runs one statement straight on the server's database: pgQuery
// on PostgreSQL, liteQuery on SQLite.
func execSQL(ctx context.Context, t testing.TB, backend, dbURL, pgQuery, liteQuery string) {
	t.Helper()
	if backend == "postgres" {
		db, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(ctx)
		if _, err := db.Exec(ctx, pgQuery); err != nil {
			t.Fatal(err)
		}
		return
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+u.Path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, liteQuery); err != nil {
		t.Fatal(err)
	}
}
