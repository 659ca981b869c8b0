package ws_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wstest"
)

// failCommits installs in the server's PostgreSQL database a deferred
// constraint trigger on messages that raises at COMMIT while the flag row
// says so: every statement of the writer's transaction succeeds, and only
// the commit fails. It returns a function that turns the failure on or off.
func failCommits(ctx context.Context, t *testing.T, dbURL string) func(on bool) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	for _, q := range []string{
		`CREATE TABLE test_fail_commit (fail boolean NOT NULL)`,
		`INSERT INTO test_fail_commit VALUES (false)`,
		`CREATE FUNCTION test_fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN
		   IF (SELECT fail FROM test_fail_commit) THEN
		     RAISE EXCEPTION 'injected: the commit is refused';
		   END IF;
		   RETURN NULL;
		 END $$`,
		`CREATE CONSTRAINT TRIGGER test_fail_commit AFTER INSERT ON messages
		 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fail_commit()`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("install the failing commit: %v", err)
		}
	}
	return func(on bool) {
		t.Helper()
		if _, err := conn.Exec(ctx, `UPDATE test_fail_commit SET fail = $1`, on); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCommitFails: while PostgreSQL refuses every COMMIT (each statement
// before it succeeds), ?wait=persisted does not answer and persisted_seq
// does not advance; once commits succeed again, every acknowledged message
// is stored byte-identical, in order, and the waiting append is answered.
func TestCommitFails(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{PersistInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	setFail := failCommits(ctx, t, srv.DatabaseURL)
	info := func() hub.ChannelInfo { return decodeJSON[hub.ChannelInfo](t, mustGet(t, srv.URL+"/channels/cf")) }

	createChannel(t, srv.URL, "cf")
	want := []string{"before 1", "before 2"}
	for _, m := range want {
		if st, b := do(t, "POST", srv.URL+"/channels/cf/messages?wait=persisted", "text/plain", []byte(m)); st != 200 {
			t.Fatalf("append before the failure: %d %s", st, b)
		}
	}

	setFail(true)
	errorsBefore := metricValue(t, srv, "messages_persist_errors_total")
	type answer struct {
		status int
		body   []byte
		err    error
	}
	waited := make(chan answer, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/channels/cf/messages?wait=persisted", strings.NewReader("waited"))
		if err != nil {
			waited <- answer{err: err}
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			waited <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		waited <- answer{resp.StatusCode, b, err}
	}()
	want = append(want, "waited")
	wstest.WaitFor(t, 10*time.Second, "the waiting append to be buffered", func() bool { return info().LastSeq == 3 })
	for i := 1; i <= 3; i++ {
		m := fmt.Sprintf("during %d", i)
		if seq := appendMsg(t, srv.URL, "cf", m); seq != int64(3+i) {
			t.Fatalf("append during the failure got seq %d, want %d", seq, 3+i)
		}
		want = append(want, m)
	}
	// Several commits fail, and none of them counts as persisted.
	wstest.WaitFor(t, 10*time.Second, "commits to fail (or the waiting append to be answered)", func() bool {
		return metricValue(t, srv, "messages_persist_errors_total") >= errorsBefore+3 || len(waited) > 0
	})
	select {
	case a := <-waited:
		t.Fatalf("wait=persisted answered %d %s (%v) while every commit fails", a.status, a.body, a.err)
	default:
	}
	if in := info(); in.PersistedSeq != 2 || in.LastSeq != 6 {
		t.Fatalf("while commits fail: persisted_seq %d, last_seq %d; want 2 and 6", in.PersistedSeq, in.LastSeq)
	}
	if stored, err := srv.Store.Messages(ctx, "cf", 0, 100); err != nil || len(stored) != 2 {
		t.Fatalf("while commits fail the store has %d messages (%v), want 2", len(stored), err)
	}

	setFail(false)
	select {
	case a := <-waited:
		if a.err != nil || a.status != http.StatusOK || decodeJSON[struct{ Seq int64 }](t, a.body).Seq != 3 {
			t.Fatalf("wait=persisted after recovery: %d %s (%v), want seq 3", a.status, a.body, a.err)
		}
	case <-ctx.Done():
		t.Fatal("wait=persisted not answered after the commits recovered")
	}
	wstest.WaitFor(t, 10*time.Second, "the backlog to be persisted", func() bool { return info().PersistedSeq == 6 })
	stored, err := srv.Store.Messages(ctx, "cf", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(want) {
		t.Fatalf("stored %d messages, want %d", len(stored), len(want))
	}
	for i, m := range stored {
		if m.Seq != int64(i+1) || string(m.Data) != want[i] {
			t.Errorf("stored seq %d = %q, want seq %d = %q", m.Seq, m.Data, i+1, want[i])
		}
	}
}
