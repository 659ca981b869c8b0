package cluster_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/messages-server/messages/persist/persisttest"
	"github.com/messages-server/messages/ws"
	"github.com/messages-server/messages/ws/client"
)

// TestLargeWritesAcrossNodes: with messages of up to 1 MiB allowed (NATS
// carries at most 1 MiB in all), an 800 KiB append through a node that
// does not own the channel is forwarded and applied; a 1 MiB one, which
// can never be forwarded, is refused at once with 413, not answered
// "may have been applied"; a 1 MiB message appended on the owner reaches
// its followers (in parts), not lost to NATS's limit. Durable
// Streams appends behave the same.
func TestLargeWritesAcrossNodes(t *testing.T) {
	ns := startNATS(t)
	dbURL := persisttest.DatabaseURL(t)
	mib := func(s *nodeSetup) { s.server = func(c *ws.ServerConfig) { c.MaxMessageBytes = 1 << 20 } }
	n1 := startNodeVia(t, dbURL, ns.url(), "n1", mib)
	n2 := startNodeVia(t, dbURL, ns.url(), "n2", mib)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	mustPost(t, n1.URL+"/channels", "application/json", `{"id":"big"}`, 201)
	mustPost(t, n1.URL+"/channels/big/messages", "text/plain", "small", 200)
	sub, err := client.Subscribe(ctx, n2.URL, "big", client.Options{Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	nextMessage(ctx, t, sub, 1)

	large := strings.Repeat("a", 800<<10)
	if b := mustPost(t, n2.URL+"/channels/big/messages", "text/plain", large, 200); b != `{"seq":2}`+"\n" {
		t.Fatalf("800 KiB through n2: %s", b)
	}
	full := strings.Repeat("b", 1<<20)
	mustPost(t, n1.URL+"/channels/big/messages", "text/plain", full, 200)
	st, b := post(t, n2.URL+"/channels/big/messages", "text/plain", full)
	if st != http.StatusRequestEntityTooLarge || !strings.Contains(b, "too large to forward") {
		t.Fatalf("1 MiB through n2: %d %s, want 413 saying it is too large to forward", st, b)
	}
	for _, want := range []struct {
		seq int64
		len int
	}{{2, len(large)}, {3, len(full)}} {
		ev, err := sub.Next(ctx)
		for err == nil && ev.Kind != client.EventMessage {
			ev, err = sub.Next(ctx)
		}
		if err != nil || ev.Seq != want.seq || len(ev.Data) != want.len {
			t.Fatalf("reader on n2: seq %d of %d bytes, %v; want seq %d of %d bytes", ev.Seq, len(ev.Data), err, want.seq, want.len)
		}
	}
	if e := metric(t, n1, "messages_cluster_publish_errors_total"); e != 0 {
		t.Fatalf("the owner failed to publish %v events, want none (a follower would resync)", e)
	}
	if got := storedData(t, n1.store, "big"); len(got) != 3 {
		t.Fatalf("stored %d messages, want 3", len(got))
	}

	// Durable Streams: created on n1, appended through n2.
	req, _ := http.NewRequest(http.MethodPut, n1.URL+"/v1/stream/bigs", nil)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT stream: %v %v", resp, err)
	}
	resp.Body.Close()
	if st, b := post(t, n2.URL+"/v1/stream/bigs", "application/octet-stream", large); st/100 != 2 {
		t.Fatalf("800 KiB stream append through n2: %d %s", st, b)
	}
	if st, b := post(t, n2.URL+"/v1/stream/bigs", "application/octet-stream", full); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("1 MiB stream append through n2: %d %s, want 413", st, b)
	}
}
