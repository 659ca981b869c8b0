package persist_test

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/persist/storetest"
)

// refuseProducer makes the database at u refuse, for good, a producer
// record whose id is id, as a trigger: a refusal the store's own checks do
// not foresee.
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

// TestRefusedRecordsCostNoMessages: batches whose producer records or
// Stream-Seq the store cannot hold (invalid UTF-8, an id too long for the
// primary key's index, a value the database refuses for a reason of its
// own) are written in one group with good ones, as the writer gathers
// them from many channels. Every message of every batch is stored; only
// the refused records are left out, each batch's Done names them, and the
// good records of the same batch are stored. On both backends alike.
func TestRefusedRecordsCostNoMessages(t *testing.T) {
	for _, backend := range []string{"postgres", "sqlite"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			u := persisttest.SQLiteURL(t)
			if backend == "postgres" {
				u = persisttest.DatabaseURL(t)
			}
			s := storetest.Open(t, u)
			refuseProducer(t, backend, u, "refused")
			ctx := t.Context()
			ids := []string{"first", "long-id", "bad-seq", "good", "db-refused"}
			for _, id := range ids {
				if _, err := s.CreateStream(ctx, id, persist.StreamConfig{ContentType: "text/plain"}); err != nil {
					t.Fatal(err)
				}
			}
			at := time.Unix(1764300000, 0)
			long := persist.ProducerState{ID: noise(10_000)}
			f := &faulty{dst: s, hold: make(chan struct{}), entered: make(chan struct{})}
			w := persist.NewWriter(f, persist.WriterConfig{Workers: 1,
				MinBackoff: time.Hour}) // a retry of a permanent failure would hang the test
			r0 := startHeld(t, w, f, &persist.Batch{Channel: "first", Messages: msgs("first", 1, 1, at)})
			queued := []*persist.Batch{
				{Channel: "long-id", Messages: msgs("long-id", 1, 3, at),
					Producers: []persist.ProducerState{{ID: "ok", Epoch: 1, Seq: 2}, long}},
				{Channel: "bad-seq", Messages: msgs("bad-seq", 1, 2, at), StreamSeq: "s\xff"},
				{Channel: "good", Messages: msgs("good", 1, 2, at), StreamSeq: "0001",
					Producers: []persist.ProducerState{{ID: "ok", Epoch: 0, Seq: 1}}},
				{Channel: "db-refused", Messages: msgs("db-refused", 1, 2, at),
					Producers: []persist.ProducerState{{ID: "refused"}, {ID: "fine", Seq: 1}}},
			}
			var rs []*result
			for _, b := range queued {
				rs = append(rs, enqueue(t, w, b))
			}
			releaseAll(t, f)
			if err := r0.wait(t); err != nil {
				t.Fatalf("first: Done(%v)", err)
			}
			want := []*persist.RefusedError{
				{Channel: "long-id", Producers: []persist.ProducerState{long}},
				{Channel: "bad-seq", StreamSeq: "s\xff"},
				nil,
				{Channel: "db-refused", Producers: []persist.ProducerState{{ID: "refused"}}},
			}
			for i, b := range queued {
				err := rs[i].wait(t)
				if want[i] == nil {
					if err != nil {
						t.Errorf("batch of %q: Done(%v), want nil", b.Channel, err)
					}
					continue
				}
				re, ok := errors.AsType[*persist.RefusedError](err)
				if !ok || re.Channel != want[i].Channel || re.StreamSeq != want[i].StreamSeq ||
					!slices.Equal(re.Producers, want[i].Producers) {
					t.Errorf("batch of %q: Done(%v), want a *RefusedError listing %+v", b.Channel, err, want[i])
				}
			}
			closeWriter(t, w)
			checkMessages(t, s, "long-id", 3)
			checkMessages(t, s, "bad-seq", 2)
			checkMessages(t, s, "good", 2)
			checkMessages(t, s, "db-refused", 2)
			for id, want := range map[string]persist.StreamState{
				"long-id":    {Producers: []persist.ProducerState{{ID: "ok", Epoch: 1, Seq: 2}}},
				"bad-seq":    {},
				"good":       {StreamSeq: "0001", Producers: []persist.ProducerState{{ID: "ok", Seq: 1}}},
				"db-refused": {Producers: []persist.ProducerState{{ID: "fine", Seq: 1}}},
			} {
				st, err := s.Stream(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if st.StreamSeq != want.StreamSeq || !slices.Equal(st.Producers, want.Producers) {
					t.Errorf("stream %q: Stream-Seq %q, producers %+v; want %q, %+v",
						id, st.StreamSeq, st.Producers, want.StreamSeq, want.Producers)
				}
			}
			// The store's own entry points refuse the same values.
			if err := s.SaveStreamWrites(ctx, "good", "s\x00", nil); !errors.Is(err, persist.ErrInvalid) {
				t.Errorf("SaveStreamWrites(NUL Stream-Seq) = %v, want ErrInvalid", err)
			}
			if err := s.SaveStreamWrites(ctx, "good", "", &long); !errors.Is(err, persist.ErrInvalid) {
				t.Errorf("SaveStreamWrites(long producer id) = %v, want ErrInvalid", err)
			}
			if _, err := s.CreateStream(ctx, "ct", persist.StreamConfig{ContentType: "text/plain; x=\xff"}); !errors.Is(err, persist.ErrInvalid) {
				t.Errorf("CreateStream(content type not UTF-8) = %v, want ErrInvalid", err)
			}
		})
	}
}
