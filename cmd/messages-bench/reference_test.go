package main

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/messages-server/messages/ws/wstest"
)

// TestReferenceCountsDoneDuringRun runs one reference channel with a reader
// that joins at once and one that would join in an hour: the first is
// counted done as soon as it and the creator have read the stream, while
// the run goes on (the progress line showed done=0 until the very end).
func TestReferenceCountsDoneDuringRun(t *testing.T) {
	srv := wstest.Start(t, wstest.Options{})
	cfg, err := parseFlags([]string{"-url", srv.URL, "-freq", "500", "-max", "20", "-seed", "1"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	src, err := newSources(cfg.URL, cfg.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	b := &bench{cfg: cfg, src: src, st: newStats(time.Minute), stderr: io.Discard}
	readers := []*refReader{{client: 0}, {client: 1, delay: time.Hour}}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		refChannel(ctx, b, cfg.Prefix+"0", readers)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for b.st.done.Load() == 0 {
		select {
		case <-returned:
			t.Fatalf("refChannel returned before the hour; done %d", b.st.done.Load())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first reader is not counted done while the channel's other reader waits (failures %d, inconsistencies %d)",
				b.st.failures.Load(), b.st.inconsist.Load())
		}
		time.Sleep(10 * time.Millisecond) // polling a counter; nothing to wait on
	}
	cancel()
	select {
	case <-returned:
	case <-time.After(20 * time.Second):
		t.Fatal("refChannel did not return after cancel")
	}
	if d, f, i := b.st.done.Load(), b.st.failures.Load(), b.st.inconsist.Load(); d != 1 || f != 1 || i != 0 {
		t.Errorf("done %d, failures %d, inconsistencies %d; want 1, 1 (the reader stopped by cancel), 0", d, f, i)
	}
}
