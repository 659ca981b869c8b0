package ws_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/hub"
	"github.com/messages-server/messages/ws/wstest"
)

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestMemoryBoundUnderGeneratorFlood: fast generators with the database
// refusing writes fill memory up to -max-buffered-bytes, counted at real
// cost, and no further: appends get 503 with Retry-After, generators pause.
// When the database is back the generators resume and every line of every
// generator is persisted, none dropped.
func TestMemoryBoundUnderGeneratorFlood(t *testing.T) {
	const (
		bound = 4 << 20
		gens  = 10
		lines = 10_000 // 100,000 lines in all: several times the bound
	)
	flaky := &flakyStore{}
	flaky.down.Store(true)
	srv := wstest.Start(t, wstest.Options{
		PersistInterval: 5 * time.Millisecond,
		BatchWriter:     func(w persist.BatchWriter) persist.BatchWriter { flaky.dst = w; return flaky },
		Hub:             func(c *hub.Config) { c.MaxBufferedBytes, c.MaxGeneratorRate = bound, gens*100_000 },
	})
	createChannel(t, srv.URL, "producer")
	before := heapInUse()
	for i := range gens {
		createGenerator(t, srv.URL, fmt.Sprintf("flood-%d", i), 100_000, lines)
	}
	wstest.WaitFor(t, 30*time.Second, "memory to reach the bound", func() bool {
		return metricValue(t, srv, "messages_buffered_bytes") > bound*0.99
	})
	held := heapInUse() - before
	gauge := metricValue(t, srv, "messages_buffered_bytes")
	appended := metricValue(t, srv, "messages_appended_total")
	t.Logf("bound %d B: %d messages held, counted %.0f B, heap grew by %d B (%.0f B per message)",
		bound, int64(appended), gauge, held, float64(held)/appended)
	if gauge > bound {
		t.Errorf("counted %.0f bytes, past the bound %d", gauge, bound)
	}
	// The heap holds the messages and little else: with messages counted
	// by data bytes only (about 30 per line) it would reach ~8 times this.
	if held > 2*bound {
		t.Errorf("the heap grew by %d bytes for a bound of %d", held, bound)
	}
	resp, err := http.Post(srv.URL+"/channels/producer/messages", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("append at the bound: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	flaky.down.Store(false)
	ctx := context.Background()
	for i := range gens {
		id := fmt.Sprintf("flood-%d", i)
		wstest.WaitFor(t, 120*time.Second, id+" closed", func() bool {
			rec, err := srv.Store.Channel(ctx, id)
			return err == nil && !rec.Open()
		})
		var got []string
		for after := int64(0); ; {
			msgs, err := srv.Store.Messages(ctx, id, after, 5000)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 0 {
				break
			}
			for _, m := range msgs {
				got = append(got, string(m.Data))
			}
			after = msgs[len(msgs)-1].Seq
		}
		expectLines(t, id, id, 0, got, lines)
	}
}
