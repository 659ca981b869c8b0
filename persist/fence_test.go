package persist_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/messages-server/messages/persist"
)

// The epoch fence of PostgreSQL writes without a channels row update: an
// old owner's batch racing a take-over either commits before the take-over
// reads the last seq, or is fenced; never both, never neither.

// fenceWaitSQL counts the transactions of this test's connections
// (application_name is the test's) waiting for a lock of the class $1:
// the fence locks, 1836279671, or the test's own, testHoldClass.
const fenceWaitSQL = `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE NOT l.granted AND l.locktype = 'advisory' AND l.classid = $1::bigint
   AND a.application_name = current_setting('application_name')`

// Lock classes of pg_locks: the fence locks, and the lock the tests hold
// to stop a transaction where they want it.
const (
	fenceClass    = 1836279671
	testHoldClass = 1
)

// waitLockWaiter waits until a transaction of the test waits for a lock
// of class, or until done is closed (a call that should have waited has
// returned: the caller checks what it did).
func waitLockWaiter(t *testing.T, conn *pgx.Conn, class int, done <-chan struct{}) {
	t.Helper()
	waitLockWaiters(t, conn, class, 1, done)
}

// waitLockWaiters waits until n transactions of the test wait for a lock
// of class, or until done is closed.
func waitLockWaiters(t *testing.T, conn *pgx.Conn, class, n int, done <-chan struct{}) {
	t.Helper()
	waitWaiters(t, conn, fmt.Sprintf("lock of class %d", class), n, done, fenceWaitSQL, class)
}

// waitWaiters waits until query (a count of waiting transactions, with
// args) reaches n, or until done is closed (nil: never), polling the
// server's lock table; what names the lock waited for, for the failure.
func waitWaiters(t *testing.T, conn *pgx.Conn, what string, n int, done <-chan struct{}, query string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var got int
		if err := conn.QueryRow(t.Context(), query, args...).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got >= n {
			return
		}
		select {
		case <-done:
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d transactions wait for a %s after %v, want %d", got, what, waitTimeout, n)
		}
		time.Sleep(time.Millisecond) // polling the server's lock table with a deadline
	}
}

// call is a store call run in a goroutine: done is closed when it returned
// c and err.
type call struct {
	done chan struct{}
	c    persist.Channel
	err  error
}

// goCall runs f in a goroutine.
func goCall(f func() (persist.Channel, error)) *call {
	c := &call{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.c, c.err = f()
	}()
	return c
}

// connect opens a connection of the test's own to the database at u.
func connect(t *testing.T, u string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// exec runs q on conn, failing t on an error.
func exec(t *testing.T, conn *pgx.Conn, q string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// fenceSetup creates channel "f" with messages 1..2 written at epoch 1.
func fenceSetup(t *testing.T) (*persist.Store, string) {
	s, u := openStore(t)
	ctx := t.Context()
	if c, err := s.CreateChannel(ctx, "f", nil); err != nil || c.Epoch != 1 {
		t.Fatalf("CreateChannel: %+v, %v", c, err)
	}
	at := time.Unix(1764300000, 0)
	if err := s.WriteBatches(ctx, []*persist.Batch{{Channel: "f", Epoch: 1, Messages: msgs("f", 1, 2, at)}}); err != nil {
		t.Fatal(err)
	}
	return s, u
}

// TestFenceTakeOverFirst: a take-over that holds its fence lock makes the
// old owner's write wait, then fences it; the write is not stored and the
// new epoch starts at what was.
func TestFenceTakeOverFirst(t *testing.T) {
	s, u := fenceSetup(t)
	ctx := t.Context()
	hold := connect(t, u)
	watch := connect(t, u)
	// Hold the channel's row: the take-over takes its fence locks, then
	// waits for the row.
	exec(t, hold, `BEGIN`)
	exec(t, hold, `SELECT 1 FROM channels WHERE id = 'f' FOR NO KEY UPDATE`)
	took := goCall(func() (persist.Channel, error) { return s.OpenEpoch(ctx, "f") })
	waitRowWaiter(t, watch)
	wrote := goCall(func() (persist.Channel, error) {
		return persist.Channel{}, s.WriteBatches(ctx, []*persist.Batch{{Channel: "f", Epoch: 1,
			Messages: msgs("f", 3, 3, time.Unix(1764300000, 0))}})
	})
	// The old owner's write waits for the take-over's fence lock.
	waitLockWaiter(t, watch, fenceClass, wrote.done)
	exec(t, hold, `COMMIT`)
	<-took.done
	<-wrote.done
	checkRace(t, s, took, wrote, 2, 3)
	if !errors.Is(wrote.err, persist.ErrFenced) {
		t.Fatalf("WriteBatches during the take-over = %v, want %v", wrote.err, persist.ErrFenced)
	}
}

// checkRace fails t unless a write of seqs up to last, racing a take-over
// of a channel that had messages up to before, either committed and the
// take-over started after it, or was fenced and not stored: no committed
// write lost, no write both committed and reported fenced.
func checkRace(t *testing.T, s *persist.Store, took, wrote *call, before, last int64) {
	t.Helper()
	if took.err != nil || took.c.Epoch != 2 {
		t.Fatalf("OpenEpoch = %+v, %v; want epoch 2", took.c, took.err)
	}
	survived, err := s.Survived(t.Context(), "f", 1)
	if err != nil || survived != took.c.LastSeq {
		t.Fatalf("Survived(epoch 1) = %d, %v; want the take-over's last seq, %d", survived, err, took.c.LastSeq)
	}
	switch {
	case wrote.err == nil && took.c.LastSeq != last:
		t.Fatalf("write committed up to seq %d, but the take-over started its epoch at %d: the write is lost", last, took.c.LastSeq)
	case wrote.err == nil:
		checkMessages(t, s, "f", last)
	case !errors.Is(wrote.err, persist.ErrFenced):
		t.Fatalf("WriteBatches = %v, want nil or %v", wrote.err, persist.ErrFenced)
	case took.c.LastSeq != before:
		t.Fatalf("take-over started at %d, want %d", took.c.LastSeq, before)
	default:
		checkMessages(t, s, "f", before) // fenced: nothing stored
	}
}

// waitRowWaiter waits until a transaction of the test waits for a row
// lock (a transactionid lock, which is how a row's waiter waits for the
// transaction that holds it).
func waitRowWaiter(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	waitWaiters(t, conn, "row", 1, nil, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
	  WHERE NOT l.granted AND l.locktype IN ('transactionid', 'tuple')
	    AND a.application_name = current_setting('application_name')`)
}

// TestFenceWriteFirst: a write under way, stopped after it inserted its
// messages and before its commit, makes a take-over wait; the take-over
// then starts its epoch at the write's last seq, and the write, committed,
// is reported written.
func TestFenceWriteFirst(t *testing.T) {
	s, u := fenceSetup(t)
	ctx := t.Context()
	hold, watch, wrote := heldWrite(t, s, u)
	took := goCall(func() (persist.Channel, error) { return s.OpenEpoch(ctx, "f") })
	// The take-over waits for the write's fence lock.
	waitLockWaiter(t, watch, fenceClass, took.done)
	exec(t, hold, `COMMIT`)
	<-took.done
	<-wrote.done
	checkRace(t, s, took, wrote, 2, 5)
	if wrote.err != nil {
		t.Fatalf("WriteBatches before the take-over = %v, want it committed", wrote.err)
	}
}

// heldWrite starts a write of messages 3..5 of the channel "f" at epoch
// 1 and stops it after it inserted them, before its commit, until hold
// commits; watch is a connection to watch the lock table with.
func heldWrite(t *testing.T, s *persist.Store, u string) (hold, watch *pgx.Conn, wrote *call) {
	t.Helper()
	hold, watch = connect(t, u), connect(t, u)
	holdInserts(t, hold)
	wrote = goCall(func() (persist.Channel, error) {
		return persist.Channel{}, s.WriteBatches(t.Context(), []*persist.Batch{{Channel: "f", Epoch: 1,
			Messages: msgs("f", 3, 5, time.Unix(1764300000, 0))}})
	})
	waitLockWaiter(t, watch, testHoldClass, wrote.done)
	return hold, watch, wrote
}

// holdInserts stops every insert of messages, after it inserted its rows
// and before its transaction ends, until hold commits.
func holdInserts(t *testing.T, hold *pgx.Conn) {
	t.Helper()
	exec(t, hold, `CREATE FUNCTION hold_insert() RETURNS trigger LANGUAGE plpgsql AS $$
	 BEGIN PERFORM pg_advisory_xact_lock_shared(1, 1); RETURN NULL; END $$`)
	exec(t, hold, `CREATE TRIGGER hold_insert AFTER INSERT ON messages FOR EACH STATEMENT EXECUTE FUNCTION hold_insert()`)
	exec(t, hold, `BEGIN`)
	exec(t, hold, `SELECT pg_advisory_xact_lock(1, 1)`)
}

// TestFenceDeleteWaitsForWrite: a delete of a channel a write is storing
// messages of waits for the write, and deletes its messages too: a channel
// created again under the id starts empty.
func TestFenceDeleteWaitsForWrite(t *testing.T) {
	s, u := fenceSetup(t)
	ctx := t.Context()
	hold, watch, wrote := heldWrite(t, s, u)
	deleted := goCall(func() (persist.Channel, error) { return persist.Channel{}, s.DeleteChannel(ctx, "f") })
	waitLockWaiter(t, watch, fenceClass, deleted.done)
	exec(t, hold, `COMMIT`)
	<-wrote.done
	<-deleted.done
	if wrote.err != nil || deleted.err != nil {
		t.Fatalf("WriteBatches = %v, DeleteChannel = %v; want both done", wrote.err, deleted.err)
	}
	if _, err := s.CreateChannel(ctx, "f", nil); err != nil {
		t.Fatal(err)
	}
	checkMessages(t, s, "f", 0)
}

// TestLastSeqWithoutChannelUpdate: ordinary flushes leave the channels row
// alone, and every reader still sees the last seq of the messages; a close
// records it, and a closed channel refuses a later seq.
func TestLastSeqWithoutChannelUpdate(t *testing.T) {
	s, u := openStore(t)
	ctx := t.Context()
	conn := connect(t, u)
	for _, id := range []string{"a", "b"} {
		if _, err := s.CreateChannel(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Unix(1764300000, 0)
	for from := int64(1); from <= 7; from += 3 {
		if err := s.WriteBatches(ctx, []*persist.Batch{
			{Channel: "a", Epoch: 1, Messages: msgs("a", from, from+2, at)},
			{Channel: "b", Messages: msgs("b", from, from, at)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	var stored int64
	if err := conn.QueryRow(ctx, `SELECT last_seq FROM channels WHERE id = 'a'`).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("channels.last_seq of a = %d, %v; want 0: an ordinary flush does not update the row", stored, err)
	}
	want := map[string]int64{"a": 9, "b": 7}
	checkLastSeqs(t, s, want)
	if n, err := s.Survived(ctx, "a", 1); err != nil || n != 9 {
		t.Fatalf("Survived(a, 1) = %d, %v; want 9", n, err)
	}
	// A retry of stored messages does not move it back.
	if err := s.WriteBatches(ctx, []*persist.Batch{{Channel: "a", Epoch: 1, Messages: msgs("a", 4, 6, at)}}); err != nil {
		t.Fatal(err)
	}
	checkLastSeqs(t, s, want)
	// A close with no message records the last seq.
	if err := s.WriteBatches(ctx, []*persist.Batch{{Channel: "a", Epoch: 1, Close: true}}); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT last_seq FROM channels WHERE id = 'a'`).Scan(&stored); err != nil || stored != 9 {
		t.Fatalf("channels.last_seq of closed a = %d, %v; want 9", stored, err)
	}
	checkLastSeqs(t, s, want)
	err := s.WriteBatches(ctx, []*persist.Batch{{Channel: "a", Epoch: 1, Messages: msgs("a", 10, 10, at)}})
	if !errors.Is(err, persist.ErrChannelClosed) {
		t.Fatalf("WriteBatches past the close = %v, want %v", err, persist.ErrChannelClosed)
	}
	if err := s.WriteBatches(ctx, []*persist.Batch{{Channel: "a", Epoch: 1, Messages: msgs("a", 8, 9, at)}}); err != nil {
		t.Fatalf("a retry of stored messages of a closed channel = %v, want nil", err)
	}
	checkMessages(t, s, "a", 9)
	// A take-over records it too.
	if c, err := s.OpenEpoch(ctx, "b"); err != nil || c.LastSeq != 7 || c.Epoch != 2 {
		t.Fatalf("OpenEpoch(b) = %+v, %v; want epoch 2 from seq 7", c, err)
	}
	if n, err := s.Survived(ctx, "b", 1); err != nil || n != 7 {
		t.Fatalf("Survived(b, 1) = %d, %v; want 7", n, err)
	}
}

// checkLastSeqs fails t unless Channel and Channels give each channel of
// want its last seq.
func checkLastSeqs(t *testing.T, s *persist.Store, want map[string]int64) {
	t.Helper()
	for id, last := range want {
		if c, err := s.Channel(t.Context(), id); err != nil || c.LastSeq != last {
			t.Fatalf("Channel(%s) = %+v, %v; want last seq %d", id, c, err, last)
		}
	}
	cs, err := s.Channels(t.Context(), "", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if last, ok := want[c.ID]; ok && c.LastSeq != last {
			t.Fatalf("Channels: %s at last seq %d, want %d", c.ID, c.LastSeq, last)
		}
	}
}

// TestFenceRetentionAfterTakeOver: retention deleting a closed channel
// while a take-over of it waits for the channel's fence lock (held here by
// a write in flight, shared) must not deadlock. Retention locked the
// channel's row first and its fence lock after, the reverse of take-overs
// and deletes: once the write ended, the take-over had the fence lock and
// waited for the row, retention held the row and waited for the fence
// lock, and PostgreSQL aborted one of them (40P01).
func TestFenceRetentionAfterTakeOver(t *testing.T) {
	s, u := fenceSetup(t)
	ctx := t.Context()
	if err := s.WriteBatches(ctx, []*persist.Batch{{Channel: "f", Epoch: 1, Close: true}}); err != nil {
		t.Fatal(err)
	}
	hold, watch := connect(t, u), connect(t, u)
	exec(t, hold, `BEGIN`)
	exec(t, hold, `SELECT pg_advisory_xact_lock_shared(`+strconv.Itoa(fenceClass)+`, (hashtext(current_schema()) & ~63) | $1)`,
		persist.FenceBucket("f"))
	took := goCall(func() (persist.Channel, error) { return s.OpenEpoch(ctx, "f") })
	waitLockWaiters(t, watch, fenceClass, 1, took.done)
	retention := goCall(func() (persist.Channel, error) {
		_, err := s.DeleteClosedBefore(ctx, time.Now().Add(time.Hour), 10)
		return persist.Channel{}, err
	})
	waitLockWaiters(t, watch, fenceClass, 2, retention.done)
	exec(t, hold, `COMMIT`)
	<-took.done
	<-retention.done
	if took.err != nil || retention.err != nil {
		t.Fatalf("take-over: %v; retention: %v", took.err, retention.err)
	}
}
