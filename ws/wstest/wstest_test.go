package wstest_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wstest"
)

// hangingWriter stands for a persist writer bug: once hung, every write
// blocks, ignoring its context, until released.
type hangingWriter struct {
	dst     persist.BatchWriter
	hung    atomic.Bool
	entered atomic.Int64
	release chan struct{}
}

func (h *hangingWriter) WriteBatches(ctx context.Context, b []*persist.Batch) error {
	if !h.hung.Load() {
		return h.dst.WriteBatches(ctx, b)
	}
	h.entered.Add(1)
	<-h.release
	return fmt.Errorf("released")
}

// recorder passes everything to the test but keeps the errors reported.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestCloseIsBounded: a server whose writer never returns makes Close fail
// the test soon after the shutdown timeout, naming the stuck goroutines,
// rather than wait forever.
func TestCloseIsBounded(t *testing.T) {
	hw := &hangingWriter{release: make(chan struct{})}
	rec := &recorder{TB: t}
	const timeout = 500 * time.Millisecond
	srv := wstest.Start(rec, wstest.Options{
		Backend: "sqlite", ShutdownTimeout: timeout, PersistInterval: time.Millisecond,
		BatchWriter: func(w persist.BatchWriter) persist.BatchWriter { hw.dst = w; return hw },
	})
	defer close(hw.release) // let the stuck goroutines end with the test
	post := func(path, body string) {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
	}
	post("/channels", `{"id":"stuck"}`)
	hw.hung.Store(true)
	post("/channels/stuck/messages", "never written")
	deadline := time.Now().Add(10 * time.Second)
	for hw.entered.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the writer was never called")
		}
		time.Sleep(2 * time.Millisecond) // polling step, not synchronisation
	}
	start := time.Now()
	srv.Close()
	if d := time.Since(start); d > timeout+wstest.StopGrace+2*time.Second {
		t.Errorf("Close took %v", d)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "did not stop") || !strings.Contains(rec.errs[0], "WriteBatches") {
		t.Errorf("want one error naming the stuck writer, got %q", rec.errs)
	}
}
