package ws_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wire"
	"github.com/messages-server/messages/ws/wstest"
)

// flakyStore fails every write while down, as an unreachable database does.
type flakyStore struct {
	dst      persist.BatchWriter
	down     atomic.Bool
	failures atomic.Int64
}

func (f *flakyStore) WriteBatches(ctx context.Context, b []*persist.Batch) error {
	if f.down.Load() {
		f.failures.Add(1)
		return errors.New("injected: database unreachable")
	}
	return f.dst.WriteBatches(ctx, b)
}

// TestDatabaseOutage: while writes fail, appends are delivered live and
// buffered up to the bound, then refused with 503; when the database comes
// back everything accepted is persisted, in order, and nothing is lost.
func TestDatabaseOutage(t *testing.T) {
	flaky := &flakyStore{}
	srv := wstest.Start(t, wstest.Options{
		PersistInterval: 5 * time.Millisecond, MaxBufferedPerChannel: 50,
		BatchWriter: func(w persist.BatchWriter) persist.BatchWriter { flaky.dst = w; return flaky },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	createChannel(t, srv.URL, "out")
	live := dialRaw(ctx, t, srv.URL, "out", 0, "")
	if err := readUntilLive(ctx, live); err != nil {
		t.Fatal(err)
	}
	flaky.down.Store(true)
	for i := 1; i <= 50; i++ {
		appendMsg(t, srv.URL, "out", fmt.Sprintf("m%d", i))
	}
	// Delivered live although not durable.
	if err := live.readUntil(ctx, 50); err != nil {
		t.Fatal(err)
	}
	st, b := do(t, "POST", srv.URL+"/channels/out/messages", "text/plain", []byte("m51"))
	if st != http.StatusServiceUnavailable || !strings.Contains(string(b), "retry later") {
		t.Fatalf("append past the bound: %d %s, want 503", st, b)
	}
	wstest.WaitFor(t, 10*time.Second, "a failed write", func() bool { return flaky.failures.Load() > 0 })
	info := decodeJSON[hub.ChannelInfo](t, mustGet(t, srv.URL+"/channels/out"))
	if info.PersistedSeq != 0 || info.LastSeq != 50 {
		t.Fatalf("during the outage: %+v", info)
	}
	if metricValue(t, srv, "messages_persist_errors_total") == 0 {
		t.Error("persist errors not counted")
	}
	flaky.down.Store(false)
	wstest.WaitFor(t, 10*time.Second, "the backlog to be persisted", func() bool {
		return decodeJSON[hub.ChannelInfo](t, mustGet(t, srv.URL+"/channels/out")).PersistedSeq == 50
	})
	if seq := appendMsg(t, srv.URL, "out", "m51"); seq != 51 {
		t.Fatalf("after recovery: seq %d, want 51", seq)
	}
	if st, b := do(t, "POST", srv.URL+"/channels/out/close", "", nil); st != 200 {
		t.Fatalf("close: %d %s", st, b)
	}
	// Straight from the database.
	msgs, err := srv.Store.Messages(ctx, "out", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 51 {
		t.Fatalf("stored %d messages, want 51", len(msgs))
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) || string(m.Data) != fmt.Sprintf("m%d", i+1) {
			t.Fatalf("stored message %d: seq %d %q", i, m.Seq, m.Data)
		}
	}
}

// TestEpochReset: a crash loses the tail that was delivered but not yet
// durable. A client that saw that tail and resumes with its old epoch gets
// reset (4409) with the last seq it may keep; one whose history survived
// continues seamlessly.
func TestEpochReset(t *testing.T) {
	flaky := &flakyStore{}
	srv := wstest.Start(t, wstest.Options{
		PersistInterval: time.Millisecond,
		BatchWriter:     func(w persist.BatchWriter) persist.BatchWriter { flaky.dst = w; return flaky },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	createChannel(t, srv.URL, "crash")
	for i := 1; i <= 3; i++ {
		st, b := do(t, "POST", srv.URL+"/channels/crash/messages?wait=persisted", "text/plain", []byte(fmt.Sprintf("d%d", i)))
		if st != 200 {
			t.Fatalf("durable append: %d %s", st, b)
		}
	}
	s := dialRaw(ctx, t, srv.URL, "crash", 0, "")
	if err := readUntilLive(ctx, s); err != nil {
		t.Fatal(err)
	}
	flaky.down.Store(true)
	for i := 4; i <= 6; i++ {
		appendMsg(t, srv.URL, "crash", fmt.Sprintf("lost%d", i))
	}
	if err := s.readUntil(ctx, 6); err != nil { // delivered, not durable
		t.Fatal(err)
	}
	oldEpoch := s.hello.Epoch
	srv.Crash()

	srv2 := wstest.Start(t, wstest.Options{DatabaseURL: srv.DatabaseURL})
	// The channel goes on from what was durable: seq 4 is a new message.
	if seq := appendMsg(t, srv2.URL, "crash", "new4"); seq != 4 {
		t.Fatalf("first append after the crash got seq %d, want 4", seq)
	}
	// The client that saw the lost tail is told, not silently continued.
	c, _, err := websocket.Dial(ctx, wsURL(srv2.URL, "crash", 6, oldEpoch), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := wire.DecodeFrame(b)
	if err != nil || f.Type != wire.FrameError || f.Code != wire.CodeReset || f.LastSeq != 3 {
		t.Fatalf("want a reset error with last_seq 3, got %s (%v)", b, err)
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusCode(wire.CloseReset) {
		t.Fatalf("want close 4409, got %v", err)
	}
	// Resuming from the last seq it may keep continues with the new history.
	s2 := dialRaw(ctx, t, srv2.URL, "crash", 3, oldEpoch)
	if err := s2.readUntil(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if s2.data[0] != "new4" || s2.hello.Epoch == oldEpoch {
		t.Fatalf("after reset: %q, epoch %s (old %s)", s2.data, s2.hello.Epoch, oldEpoch)
	}
}

// TestRestart stops the server gracefully mid-stream and starts a new one on
// the same database: the history is intact and contiguous, the generator
// goes on, appends continue at the next seq, and a resume with the old epoch
// continues seamlessly because nothing was lost.
func TestRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := wstest.Start(t, wstest.Options{PersistInterval: 200 * time.Millisecond})
	const n = 300
	createGenerator(t, srv.URL, "gen", 200, n)
	createChannel(t, srv.URL, "prod")
	for i := 1; i <= 5; i++ {
		appendMsg(t, srv.URL, "prod", fmt.Sprintf("p%d", i))
	}
	s := dialRaw(ctx, t, srv.URL, "gen", 0, "")
	if err := s.readUntil(ctx, 40); err != nil {
		t.Fatal(err)
	}
	srv.Close() // graceful: flushes everything
	for {
		_, err := s.next(ctx)
		if err != nil {
			if st := websocket.CloseStatus(err); st != websocket.StatusGoingAway {
				t.Fatalf("on shutdown: want close 1001, got %v", err)
			}
			break
		}
	}
	srv2 := wstest.Start(t, wstest.Options{DatabaseURL: srv.DatabaseURL})
	if seq := appendMsg(t, srv2.URL, "prod", "p6"); seq != 6 {
		t.Errorf("append after restart got seq %d, want 6", seq)
	}
	s2 := dialRaw(ctx, t, srv2.URL, "gen", s.last, s.hello.Epoch)
	if err := s2.readToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	if s2.hello.Epoch == s.hello.Epoch {
		t.Errorf("epoch did not change across the restart: %s", s.hello.Epoch)
	}
	expectLines(t, "across restart", "gen", 0, append(s.data, s2.data...), n)
	full := dialRaw(ctx, t, srv2.URL, "gen", 0, "")
	if err := full.readToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	expectLines(t, "history after restart", "gen", 0, full.data, n)
}

// TestInfoEpochAfterCrash: after a crash, GET /channels/{id} and
// GET /channels show the epoch a subscriber gets, before and after
// anything takes the channel over.
func TestInfoEpochAfterCrash(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{PersistInterval: time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	createChannel(t, srv.URL, "ep")
	st, b := do(t, "POST", srv.URL+"/channels/ep/messages?wait=persisted", "text/plain", []byte("durable"))
	if st != 200 {
		t.Fatalf("durable append: %d %s", st, b)
	}
	srv.Crash()

	srv2 := wstest.Start(t, wstest.Options{DatabaseURL: srv.DatabaseURL})
	before := decodeJSON[hub.ChannelInfo](t, mustGet(t, srv2.URL+"/channels/ep"))
	list := decodeJSON[struct{ Channels []hub.ChannelInfo }](t, mustGet(t, srv2.URL+"/channels"))
	if len(list.Channels) != 1 || list.Channels[0].Epoch != before.Epoch {
		t.Errorf("GET /channels: %+v, GET /channels/ep says epoch %s", list.Channels, before.Epoch)
	}
	s := dialRaw(ctx, t, srv2.URL, "ep", 0, "")
	if err := readUntilLive(ctx, s); err != nil {
		t.Fatal(err)
	}
	after := decodeJSON[hub.ChannelInfo](t, mustGet(t, srv2.URL+"/channels/ep"))
	if before.Epoch != s.hello.Epoch || after.Epoch != s.hello.Epoch || s.hello.Epoch != "2" {
		t.Errorf("epoch shown before the take-over %s, after %s; a subscriber got %s (want 2)",
			before.Epoch, after.Epoch, s.hello.Epoch)
	}
	if before.LastSeq != 1 || before.PersistedSeq != 1 || !before.Open {
		t.Errorf("before the take-over: %+v", before)
	}
}
