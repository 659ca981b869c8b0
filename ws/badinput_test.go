package ws_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/ws/wstest"
)

// noise returns n letters that do not compress: PostgreSQL compresses an
// index entry before it checks its size.
func noise(n int) string {
	r := rand.New(rand.NewChaCha8([32]byte{}))
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(r.IntN(26))
	}
	return string(b)
}

// badHeaders are appends whose headers carry values that PostgreSQL
// cannot store (invalid UTF-8, an index entry too big) or that exceed the
// limits both stores share, with the header each 400 must name.
var badHeaders = []struct {
	name    string
	header  string
	headers []string
}{
	{"producer id not UTF-8", "Producer-Id", []string{"Producer-Id", "p\xff", "Producer-Epoch", "0", "Producer-Seq", "0"}},
	{"producer id too long", "Producer-Id", []string{"Producer-Id", noise(10_000), "Producer-Epoch", "0", "Producer-Seq", "0"}},
	{"Stream-Seq not UTF-8", "Stream-Seq", []string{"Stream-Seq", "9\xff"}},
	{"Stream-Seq too long", "Stream-Seq", []string{"Stream-Seq", "9" + noise(10_000)}},
}

// tail returns a stream's Stream-Next-Offset.
func tail(t testing.TB, stream string) string {
	t.Helper()
	r := wstest.Do(t, "HEAD", stream, nil)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("HEAD %s: %d", stream, r.StatusCode)
	}
	return r.Header.Get("Stream-Next-Offset")
}

// TestBadHeadersRefusedAtTheEdge: a Durable Streams append, or a channels
// API append, whose Producer-Id or Stream-Seq the store cannot hold is
// refused with a 400 that names the header, and nothing is appended; so
// is a stream whose Content-Type the store cannot hold. The same on both
// backends, although SQLite would store those values.
func TestBadHeadersRefusedAtTheEdge(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, wstest.Options{Backend: backend})
			stream := srv.URL + "/v1/stream/s"
			if r := wstest.Do(t, "PUT", stream, nil, "Content-Type", "text/plain"); r.StatusCode != http.StatusCreated {
				t.Fatalf("PUT: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			before := tail(t, stream)
			for _, tc := range badHeaders {
				for _, u := range []string{stream, srv.URL + "/channels/s/messages"} {
					if strings.Contains(u, "/channels/") && tc.header != "Producer-Id" {
						continue // the channels API takes no Stream-Seq
					}
					st, body, err := wstest.Post(t.Context(), u, []byte("x"), append([]string{"Content-Type", "text/plain"}, tc.headers...)...)
					if err != nil {
						t.Fatal(err)
					}
					if st != http.StatusBadRequest || !strings.Contains(body, tc.header) {
						t.Errorf("%s to %s: %d %s; want 400 naming %s", tc.name, u, st, body, tc.header)
					}
				}
			}
			if after := tail(t, stream); after != before {
				t.Errorf("the stream's tail moved from %s to %s: a refused append was appended", before, after)
			}
			r := wstest.Do(t, "PUT", srv.URL+"/v1/stream/ct", nil, "Content-Type", "text/plain; charset=\"\xff\"")
			if body := wstest.ReadAll(t, r); r.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "Content-Type") {
				t.Errorf("PUT with a Content-Type not UTF-8: %d %s; want 400 naming Content-Type", r.StatusCode, body)
			}
			for _, tc := range []struct{ header, value string }{
				{"Stream-Forked-From", "/v1/stream/%FF"},
				{"Stream-Forked-From", "/v1/stream/a%00b"},
			} {
				r := wstest.Do(t, "PUT", srv.URL+"/v1/stream/ct", nil, "Content-Type", "text/plain", tc.header, tc.value)
				if body := wstest.ReadAll(t, r); r.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tc.header) {
					t.Errorf("PUT with %s: %s: %d %s; want 400 naming it", tc.header, tc.value, r.StatusCode, body)
				}
			}
			if r := wstest.Do(t, "HEAD", srv.URL+"/v1/stream/ct", nil); r.StatusCode != http.StatusNotFound {
				t.Errorf("HEAD of the refused stream: %d, want 404", r.StatusCode)
			}
			// The longest TTL the protocol allows (2^53-1 s) once overflowed
			// the expiry's arithmetic, and so did 10^10 s: the stream
			// expired at once.
			for _, ttl := range []string{"9007199254740991", "10000000000"} {
				u := srv.URL + "/v1/stream/ttl" + ttl
				if r := wstest.Do(t, "PUT", u, nil, "Content-Type", "text/plain", "Stream-TTL", ttl); r.StatusCode != http.StatusCreated {
					t.Fatalf("PUT with Stream-TTL %s: %d %s", ttl, r.StatusCode, wstest.ReadAll(t, r))
				}
				if r := wstest.Do(t, "HEAD", u, nil); r.StatusCode != http.StatusOK {
					t.Errorf("HEAD of a stream with Stream-TTL %s: %d, want 200", ttl, r.StatusCode)
				}
			}
		})
	}
}

// refuseProducer makes the database at u refuse, for good, a producer
// record whose id is id, as a trigger: a refusal that the edge's checks do
// not foresee, which only the store's defence can contain.
func refuseProducer(t testing.TB, backend, u, id string) {
	t.Helper()
	ctx := t.Context()
	if backend == "sqlite" {
		db, err := sql.Open("sqlite3", strings.TrimPrefix(u, "sqlite:"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, `CREATE TRIGGER refuse BEFORE INSERT ON producers
			WHEN NEW.producer_id = '`+id+`' BEGIN SELECT RAISE(ABORT, 'producer refused'); END`); err != nil {
			t.Fatal(err)
		}
		return
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, q := range []string{
		`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
		   IF NEW.producer_id = '` + id + `' THEN
		     RAISE EXCEPTION 'producer refused' USING ERRCODE = '22023';
		   END IF;
		   RETURN NEW;
		 END $$`,
		`CREATE TRIGGER refuse BEFORE INSERT ON producers FOR EACH ROW EXECUTE FUNCTION refuse()`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
}

// goodAppends appends "good i" for i in 0..n-1 to stream, from producers
// goroutines, while bad runs, and returns the data of every acknowledged
// append once bad has returned.
func goodAppends(t *testing.T, stream string, producers, n int, bad func(ctx context.Context) error) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var (
		mu    sync.Mutex
		acked = make(map[string]bool)
		wg    sync.WaitGroup
		errs  = make(chan error, producers+1)
	)
	for p := range producers {
		wg.Go(func() {
			for i := p; i < n; i += producers {
				data := "good " + strconv.Itoa(i) + "\n"
				st, body, err := wstest.Post(ctx, stream, []byte(data), "Content-Type", "text/plain")
				if err != nil {
					errs <- err
					return
				}
				if st == http.StatusNoContent {
					mu.Lock()
					acked[data] = true
					mu.Unlock()
				} else if st != http.StatusServiceUnavailable {
					errs <- fmt.Errorf("good append %d: %d %s", i, st, body)
					return
				}
			}
		})
	}
	wg.Go(func() {
		if err := bad(ctx); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return acked
}

// checkAcked reads the whole stream and checks that every acknowledged
// append is in it exactly once, and that the stream is still in epoch.
func checkAcked(t *testing.T, stream string, acked map[string]bool, epoch string) {
	t.Helper()
	r := wstest.Do(t, "GET", stream+"?offset=-1", nil)
	body := wstest.ReadAll(t, r)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("read: %d %s", r.StatusCode, body)
	}
	seen := make(map[string]int)
	for line := range strings.Lines(string(body)) {
		seen[line]++
	}
	lost := 0
	for data := range acked {
		if seen[data] != 1 {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged appends are not in the stream exactly once", lost, len(acked))
	}
	if off := r.Header.Get("Stream-Next-Offset"); !strings.HasPrefix(off, epoch) {
		t.Errorf("the stream is at offset %s, no longer in epoch %s: it failed and was taken over", off, epoch)
	}
}

// TestBadHeaderLosesNoAcknowledgedAppends is the audit's scenario: while
// good producers append to a stream, requests with a Producer-Id or a
// Stream-Seq the store cannot hold are made to it. They are refused, and
// every append acknowledged to the good producers is in the stream, which
// never failed (its epoch did not change). On PostgreSQL the bad values
// used to fail the whole batch in the database, losing the acknowledged
// appends of the same batch.
func TestBadHeaderLosesNoAcknowledgedAppends(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, wstest.Options{Backend: backend})
			stream := srv.URL + "/v1/stream/mixed"
			if r := wstest.Do(t, "PUT", stream, nil, "Content-Type", "text/plain"); r.StatusCode != http.StatusCreated {
				t.Fatalf("PUT: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			epoch, _, _ := strings.Cut(tail(t, stream), "_")
			acked := goodAppends(t, stream, 3, 300, func(ctx context.Context) error {
				for i := range 40 {
					tc := badHeaders[i%len(badHeaders)]
					st, body, err := wstest.Post(ctx, stream, []byte("bad\n"), append([]string{"Content-Type", "text/plain"}, tc.headers...)...)
					if err != nil {
						return err
					}
					if st != http.StatusBadRequest {
						return fmt.Errorf("%s: %d %s, want 400", tc.name, st, body)
					}
				}
				return nil
			})
			checkAcked(t, stream, acked, epoch)
		})
	}
}

// TestStoreRefusalCostsOnlyItsRecord is the same scenario past the edge:
// the database refuses a producer record the edge let through (a trigger
// stands for a limit nobody foresaw). Only that request fails, with a 500
// saying its message was appended but not recorded; every acknowledged
// append is in the stream, the stream does not fail, and it takes appends
// afterwards.
func TestStoreRefusalCostsOnlyItsRecord(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, wstest.Options{Backend: backend})
			refuseProducer(t, backend, srv.DatabaseURL, "poison")
			stream := srv.URL + "/v1/stream/mixed"
			if r := wstest.Do(t, "PUT", stream, nil, "Content-Type", "text/plain"); r.StatusCode != http.StatusCreated {
				t.Fatalf("PUT: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			epoch, _, _ := strings.Cut(tail(t, stream), "_")
			acked := goodAppends(t, stream, 3, 300, func(ctx context.Context) error {
				for i := range 10 {
					st, body, err := wstest.Post(ctx, stream, []byte("poison\n"), "Content-Type", "text/plain",
						"Producer-Id", "poison", "Producer-Epoch", strconv.Itoa(i), "Producer-Seq", "0")
					if err != nil {
						return err
					}
					if st != http.StatusInternalServerError {
						return fmt.Errorf("refused producer: %d %s, want 500", st, body)
					}
				}
				return nil
			})
			if r := wstest.Do(t, "POST", stream, []byte("after\n"), "Content-Type", "text/plain"); r.StatusCode != http.StatusNoContent {
				t.Fatalf("append after the refusals: %d %s", r.StatusCode, wstest.ReadAll(t, r))
			}
			acked["after\n"] = true
			checkAcked(t, stream, acked, epoch)
		})
	}
}
