package ws_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wstest"
)

// TestGeneratorStartsWithSubscribers: a generator created with
// start_when_subscribers waits for them, so every one of them sees the
// whole stream live.
func TestGeneratorStartsWithSubscribers(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, b := do(t, "POST", srv.URL+"/channels", "application/json",
		[]byte(`{"id":"wait","generator":{"freq":1000,"max":20,"start_when_subscribers":2}}`))
	if st != http.StatusCreated {
		t.Fatalf("create: %d %s", st, b)
	}
	first := dialRaw(ctx, t, srv.URL, "wait", 0, "")
	if err := readUntilLive(ctx, first); err != nil {
		t.Fatal(err)
	}
	if first.live != 0 {
		t.Fatalf("the generator started before its subscribers: live at %d", first.live)
	}
	if info := decodeJSON[hub.ChannelInfo](t, mustGet(t, srv.URL+"/channels/wait")); info.LastSeq != 0 {
		t.Fatalf("last_seq %d with one subscriber of two", info.LastSeq)
	}
	second := dialRaw(ctx, t, srv.URL, "wait", 0, "")
	for _, s := range []*rawSub{first, second} {
		if err := s.readToEnd(ctx); err != nil {
			t.Fatal(err)
		}
		expectLines(t, "subscriber", "wait", 0, s.data, 20)
	}
	if second.live != 0 {
		t.Errorf("second subscriber: live at %d, want 0", second.live)
	}
}

// TestFinishedGeneratorClosesAfterRestart: a generator that wrote its last
// line but not its close (a shutdown or crash in between) closes its
// channel when a new server takes it over, so readers get the end.
func TestFinishedGeneratorClosesAfterRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := wstest.Start(t, wstest.Options{})
	if _, err := srv.Store.CreateChannel(ctx, "done", &persist.Generator{Freq: 10, Max: 3}); err != nil {
		t.Fatal(err)
	}
	var msgs []persist.Message
	for i := int64(1); i <= 3; i++ {
		msgs = append(msgs, persist.Message{Seq: i, Time: time.Now().UnixMicro(), Data: []byte(fmt.Sprintf("%d: done\n", i))})
	}
	if err := srv.Store.WriteBatches(ctx, []*persist.Batch{{Channel: "done", Messages: msgs}}); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	srv2 := wstest.Start(t, wstest.Options{DatabaseURL: srv.DatabaseURL})
	s := dialRaw(ctx, t, srv2.URL, "done", 0, "")
	if err := s.readToEnd(ctx); err != nil {
		t.Fatal(err)
	}
	expectLines(t, "after restart", "done", 0, s.data, 3)
}
