package ws

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wire"
)

// TestGeneratorChannelRefusesProducers: producers get 409 with a JSON
// error when they append to or close a channel written by its generator,
// and the generator's stream stays exactly its lines. An append used to be
// accepted and shift every later line against its seq (and a restarted
// generator, which goes on from the last seq, then skipped lines); a close
// cut the generator short.
func TestGeneratorChannelRefusesProducers(t *testing.T) {
	ts := startTestServer(t, hub.Config{}, ServerConfig{})
	ctx := context.Background()
	const lines = 3
	// The generator waits for one subscriber: nothing is written until then.
	if _, err := ts.hub.Create(ctx, "gen", &persist.Generator{Freq: 1000, Max: lines}, 1); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/channels/gen/messages", "/channels/gen/messages?wait=persisted", "/channels/gen/close"} {
		st, body := post(t, ts.url+path, "not a generator line")
		var e struct{ Error string }
		if st != http.StatusConflict || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "generator") {
			t.Errorf("POST %s: %d %s, want 409 with a JSON error naming the generator", path, st, body)
		}
	}
	c := dialTest(t, ts.url, "gen")
	c.expect(t, wire.FrameHello, 0)
	c.expect(t, wire.FrameLive, 0)
	var data []string
	for {
		f := c.next(t)
		if f.Type == wire.FrameEnd {
			if f.Seq != lines {
				t.Fatalf("end at %d, want %d", f.Seq, lines)
			}
			break
		}
		if f.Type != wire.FrameMessage && f.Type != wire.FrameBatch || f.Seq != int64(len(data))+1 {
			t.Fatalf("got %s frame at seq %d after %d messages", f.Type, f.Seq, len(data))
		}
		data = append(data, f.Data...)
	}
	for i, d := range data {
		if want := fmt.Sprintf("%d: gen\n", i+1); d != want {
			t.Errorf("seq %d = %q, want %q", i+1, d, want)
		}
	}
}
