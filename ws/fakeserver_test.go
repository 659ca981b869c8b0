package ws

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/messages-server/messages/internal/metric/prom"
	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/hub"
)

// gateWriter is an Enqueuer over a memStore. While open it commits every
// batch at once; while held it keeps them for the test to commit or fail
// one by one, as a slow or failing database would.
type gateWriter struct {
	store *memStore

	mu      sync.Mutex
	held    bool
	pending []*persist.Batch // guarded by mu
	arrived chan struct{}    // closed and replaced when a batch is held
}

func newGateWriter(st *memStore) *gateWriter {
	return &gateWriter{store: st, arrived: make(chan struct{})}
}

// TryEnqueue implements Enqueuer.
func (w *gateWriter) TryEnqueue(b *persist.Batch) bool {
	w.mu.Lock()
	if w.held {
		w.pending = append(w.pending, b)
		close(w.arrived)
		w.arrived = make(chan struct{})
		w.mu.Unlock()
		return true
	}
	w.mu.Unlock()
	w.store.Write(b)
	b.Done(nil)
	return true
}

// hold makes the writer keep the batches it is given.
func (w *gateWriter) hold() {
	w.mu.Lock()
	w.held = true
	w.mu.Unlock()
}

// open commits the held batches and every later one at once.
func (w *gateWriter) open() {
	w.mu.Lock()
	w.held = false
	pending := w.pending
	w.pending = nil
	w.mu.Unlock()
	for _, b := range pending {
		w.store.Write(b)
		b.Done(nil)
	}
}

// next waits for a held batch of channel id and takes it from the writer.
func (w *gateWriter) next(t testing.TB, id string) *persist.Batch {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		w.mu.Lock()
		for i, b := range w.pending {
			if b.Channel == id {
				w.pending = append(w.pending[:i], w.pending[i+1:]...)
				w.mu.Unlock()
				return b
			}
		}
		arrived := w.arrived
		w.mu.Unlock()
		select {
		case <-arrived:
		case <-timeout.C:
			t.Fatalf("no batch of %s reached the writer within 10s", id)
		}
	}
}

// commit writes a held batch to the store and reports it committed.
func (w *gateWriter) commit(b *persist.Batch) {
	w.store.Write(b)
	b.Done(nil)
}

// testServer is a Server over a hub with an in-memory store, on a loopback
// port.
type testServer struct {
	hub   *hub.Hub
	store *memStore
	gate  *gateWriter
	srv   *Server
	url   string
	reg   *prometheus.Registry // the hub's collectors, unless hcfg had some
}

// startTestServer starts a Server for hcfg and scfg and shuts it down when
// the test ends. The hub's Store is a fresh memStore, seen through wrap if
// given, and its Writer a gateWriter over that memStore.
func startTestServer(t testing.TB, hcfg hub.Config, scfg ServerConfig, wrap ...func(*memStore) hub.Store) *testServer {
	t.Helper()
	st := newMemStore()
	gate := newGateWriter(st)
	hcfg.Store, hcfg.Writer = st, gate
	for _, w := range wrap {
		hcfg.Store = w(st)
	}
	reg := prometheus.NewRegistry()
	if hcfg.Metrics == nil {
		hcfg.Metrics = hub.NewMetrics(prom.New(reg))
	}
	h := hub.New(hcfg)
	srv := NewServer(h, scfg)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		gate.open()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hs.Config.SetKeepAlivesEnabled(false)
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.CloseClientConnections()
		hs.Close()
	})
	return &testServer{hub: h, store: st, gate: gate, srv: srv, url: hs.URL, reg: reg}
}

// post sends a POST and returns the status and the body.
func post(t testing.TB, u, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(u, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read body: %v", u, err)
	}
	return resp.StatusCode, string(b)
}

type httpResult struct {
	status int
	body   string
}

// receive waits for an answer that must come, failing after 10s.
func receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	select {
	case v := <-ch:
		return v
	case <-timeout.C:
		t.Fatalf("no %s within 10s", what)
	}
	var zero T
	return zero
}

// gathered returns the value of the counter or gauge name (without
// labels) in reg, or 0 if reg has none.
func gathered(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	return 0
}
