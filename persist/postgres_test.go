package persist_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/messages-server/messages/internal/metric/prom"
	"github.com/messages-server/messages/persist"
)

// failCommits installs, in the database at u, a deferred constraint
// trigger on channels (a close) and on messages that raises at COMMIT while the returned function
// was last called with true: every statement of a write succeeds and only
// its COMMIT fails, as when the server dies or runs out of disk at commit
// time.
func failCommits(t *testing.T, u string) func(on bool) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	for _, q := range []string{
		`CREATE TABLE fail_commit (fail boolean NOT NULL)`,
		`INSERT INTO fail_commit VALUES (false)`,
		`CREATE FUNCTION fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN
		   IF (SELECT fail FROM fail_commit) THEN
		     RAISE EXCEPTION 'commit refused by the test';
		   END IF;
		   RETURN NULL;
		 END $$`,
		`CREATE CONSTRAINT TRIGGER fail_commit AFTER UPDATE ON channels
		 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_commit()`,
		// An ordinary flush updates no channel: it inserts messages.
		`CREATE CONSTRAINT TRIGGER fail_commit_messages AFTER INSERT ON messages
		 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_commit()`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return func(on bool) {
		t.Helper()
		if _, err := conn.Exec(ctx, `UPDATE fail_commit SET fail = $1`, on); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWriteBatchesCommitFails makes COMMIT itself fail: WriteBatches
// reports it, nothing is stored, and once commits pass again the same
// batches are stored in full.
func TestWriteBatchesCommitFails(t *testing.T) {
	s, u := openStore(t)
	ctx := t.Context()
	for _, id := range []string{"c1", "c2"} {
		if _, err := s.CreateChannel(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	setFail := failCommits(t, u)
	at := time.Unix(1764300000, 0)
	batches := []*persist.Batch{
		{Channel: "c1", Messages: msgs("c1", 1, 3, at)},
		{Channel: "c2", Messages: msgs("c2", 1, 2, at), Close: true},
	}
	setFail(true)
	err := s.WriteBatches(ctx, batches)
	if err == nil || !strings.Contains(err.Error(), "commit refused by the test") {
		t.Fatalf("WriteBatches with a failing COMMIT = %v, want the commit's error", err)
	}
	if errors.Is(err, persist.ErrRejected) {
		t.Fatalf("a failed COMMIT is taken as permanent (%v): the Writer would drop the batches", err)
	}
	checkMessages(t, s, "c1", 0)
	checkMessages(t, s, "c2", 0)
	if c, _ := s.Channel(ctx, "c2"); !c.Open() {
		t.Fatal("c2 closed by a transaction whose COMMIT failed")
	}

	setFail(false)
	if err := s.WriteBatches(ctx, batches); err != nil {
		t.Fatalf("WriteBatches after recovery: %v", err)
	}
	checkMessages(t, s, "c1", 3)
	checkMessages(t, s, "c2", 2)
	if c, _ := s.Channel(ctx, "c2"); c.Open() {
		t.Fatal("c2 open after its closing batch was committed")
	}
}

// TestWriterCommitFails runs a Writer while COMMIT fails: the batch is
// retried, not reported persisted, and committed once commits pass again.
func TestWriterCommitFails(t *testing.T) {
	s, u := openStore(t)
	ctx := t.Context()
	if _, err := s.CreateChannel(ctx, "w", nil); err != nil {
		t.Fatal(err)
	}
	setFail := failCommits(t, u)
	setFail(true)
	reg := prometheus.NewRegistry()
	w := persist.NewWriter(s, persist.WriterConfig{Workers: 1, Metrics: prom.New(reg),
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	defer closeWriter(t, w)
	b := &persist.Batch{Channel: "w", Messages: msgs("w", 1, 4, time.Unix(1764300000, 0))}
	r := enqueue(t, w, b)
	// Wait until several commits have failed.
	deadline := time.Now().Add(waitTimeout)
	for n, _ := metric(t, reg, "messages_persist_errors_total"); n < 3; n, _ = metric(t, reg, "messages_persist_errors_total") {
		if time.Now().After(deadline) {
			t.Fatalf("errors_total = %v after %v, want the failing commits retried", n, waitTimeout)
		}
		select {
		case <-r.done:
			t.Fatalf("Done(%v) while every COMMIT fails", r.err)
		case <-time.After(time.Millisecond): // polling with a deadline
		}
	}
	select {
	case <-r.done:
		t.Fatalf("Done(%v) while every COMMIT fails", r.err)
	default:
	}
	checkMessages(t, s, "w", 0)
	setFail(false)
	if err := r.wait(t); err != nil {
		t.Fatalf("Done(%v) after recovery, want nil", err)
	}
	checkMessages(t, s, "w", 4)
}

// lockHolder returns the pid of the backend that holds the server lock of
// admin's database and schema, 0 if none.
func lockHolder(t *testing.T, admin *pgx.Conn) int32 {
	t.Helper()
	var pids []int32
	rows, err := admin.Query(t.Context(),
		`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
		 AND classid = 1836279667 AND objsubid = 1
		 AND objid::bigint = (hashtext(current_schema())::bigint & 4294967295)
		 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	if err == nil {
		pids, err = pgx.CollectRows(rows, pgx.RowTo[int32])
	}
	if err != nil || len(pids) > 1 {
		t.Fatalf("server lock holders: %v, %v", pids, err)
	}
	if len(pids) == 0 {
		return 0
	}
	return pids[0]
}

// lockCutter returns an admin connection to u and a function that
// terminates the backend holding the server lock.
func lockCutter(t *testing.T, u string) (*pgx.Conn, func()) {
	t.Helper()
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	return admin, func() {
		t.Helper()
		pid := lockHolder(t, admin)
		if pid == 0 {
			t.Fatal("nobody holds the server lock")
		}
		var done bool
		if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid).Scan(&done); err != nil || !done {
			t.Fatalf("terminate %d: %v %v", pid, done, err)
		}
	}
}

// steal cuts the store's lock connection and takes the server lock on
// admin's connection, as a second server starting at that moment would,
// trying again while the store takes its lock back first.
func steal(t *testing.T, admin *pgx.Conn, cut func()) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		cut()
		var got bool
		err := admin.QueryRow(t.Context(),
			`SELECT pg_try_advisory_lock(1836279667::bigint << 32 | (hashtext(current_schema())::bigint & 4294967295))`).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		if got {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("could not take the server lock in %v", waitTimeout)
		}
	}
}

// TestServerLockLost cuts the connection that holds a store's server
// lock: Ping takes the lock again, or, if another server took it
// meanwhile, reports it with ErrLocked.
func TestServerLockLost(t *testing.T) {
	s, u := openStore(t)
	ctx := t.Context()
	admin, cut := lockCutter(t, u)
	before := lockHolder(t, admin)
	cut()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after the lock's connection was cut: %v", err)
	}
	if after := lockHolder(t, admin); after == 0 || after == before {
		t.Fatalf("lock holder %d after Ping, want a new one (was %d)", after, before)
	}

	steal(t, admin, cut)
	if err := s.Ping(ctx); !errors.Is(err, persist.ErrLocked) {
		t.Fatalf("Ping after another server took the lock = %v, want ErrLocked", err)
	}
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_unlock_all()`); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping once the lock is free again: %v", err)
	}
}

// TestServerLockStolenStopsWrites is the case of a second server that
// starts while the first's lock connection is gone: the first must write
// nothing more (its rows would collide with the second's, and a retry
// that skips stored rows would drop its own silently), and Lost must tell
// it to stop.
func TestServerLockStolenStopsWrites(t *testing.T) {
	s, u := openStore(t)
	ctx := t.Context()
	if _, err := s.CreateChannel(ctx, "c", nil); err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1764300000, 0)
	if err := s.WriteBatches(ctx, []*persist.Batch{{Channel: "c", Messages: msgs("c", 1, 2, at)}}); err != nil {
		t.Fatal(err)
	}
	admin, cut := lockCutter(t, u)
	steal(t, admin, cut)

	err := s.WriteBatches(ctx, []*persist.Batch{{Channel: "c", Messages: msgs("c", 3, 4, at)}})
	if err == nil {
		t.Fatal("WriteBatches succeeded while another server holds the lock")
	}
	if errors.Is(err, persist.ErrRejected) {
		t.Fatalf("WriteBatches = %v: permanent, the writer would give the batch up instead of waiting", err)
	}
	checkMessages(t, s, "c", 2)
	select {
	case <-s.Lost():
	case <-time.After(waitTimeout):
		t.Fatalf("Lost not closed %v after another server took the lock", waitTimeout)
	}
}
