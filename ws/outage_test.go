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

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws"
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
	waitFor(t, 10*time.Second, "a failed write", func() bool { return flaky.failures.Load() > 0 })
	info := decodeJSON[ws.ChannelInfo](t, mustGet(t, srv.URL+"/channels/out"))
	if info.PersistedSeq != 0 || info.LastSeq != 50 {
		t.Fatalf("during the outage: %+v", info)
	}
	if metricValue(t, srv, "messages_persist_errors_total") == 0 {
		t.Error("persist errors not counted")
	}
	flaky.down.Store(false)
	waitFor(t, 10*time.Second, "the backlog to be persisted", func() bool {
		return decodeJSON[ws.ChannelInfo](t, mustGet(t, srv.URL+"/channels/out")).PersistedSeq == 50
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
