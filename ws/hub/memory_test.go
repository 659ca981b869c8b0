package hub

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/messages-server/messages/persist"
)

// holdWriter takes every batch and holds it, as a writer waiting on a slow
// database does, until release.
type holdWriter struct {
	mu      sync.Mutex
	batches []*persist.Batch
}

func (w *holdWriter) TryEnqueue(b *persist.Batch) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.batches = append(w.batches, b)
	return true
}

func (w *holdWriter) release() {
	w.mu.Lock()
	bs := w.batches
	w.batches = nil
	w.mu.Unlock()
	for _, b := range bs {
		b.Done(nil)
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestMessageCost measures what a buffered message really costs on the heap
// (its data read as a request body is, its frame, the actor's and the
// batch's bookkeeping) and checks the accounting never counts less. The
// batch in flight holds every message, the worst case.
func TestMessageCost(t *testing.T) {
	for _, size := range []int{1, 20, 200, 2000, 20000, 65536} {
		synctest.Test(t, func(t *testing.T) {
			const n = 20000 // many, so that other allocations are noise
			st := newMemStore()
			w := &holdWriter{}
			h := New(Config{Store: st, Writer: w, PersistInterval: time.Second,
				MaxBufferedPerChannel: 1 << 30, MaxBufferedBytes: 1 << 40, MaxChannelBytes: 1 << 40})
			defer func() {
				w.release()
				if err := h.Stop(context.Background()); err != nil {
					t.Error(err)
				}
			}()
			ctx := context.Background()
			if _, err := h.Create(ctx, "cost", nil, 0); err != nil {
				t.Fatal(err)
			}
			text := strings.Repeat("x", size)
			before := heapAlloc()
			for range n {
				data := bytes.Clone([]byte(text)) // as readBody leaves a body
				if _, err := h.Append(ctx, "cost", data, false); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(time.Second) // the flush: all n messages in one batch in flight
			synctest.Wait()
			real := float64(heapAlloc()-before) / n
			counted := float64(h.memBytes.Load()) / n
			overhead := real - (counted - MessageOverhead) // counted = data and frame capacities + MessageOverhead
			t.Logf("data %5d B: real %8.1f B/message, counted %8.1f, fixed overhead %5.1f (MessageOverhead %d)",
				size, real, counted, overhead, MessageOverhead)
			if real > counted {
				t.Errorf("data %d B: a message costs %.1f bytes but is counted as %.1f", size, real, counted)
			}
		})
	}
}

// TestGeneratorResumesWhenMemoryFrees: a generator paused by the bound
// does not wait out its backoff (1 s by then) once messages are released:
// it goes on as soon as the writer takes the backlog.
func TestGeneratorResumesWhenMemoryFrees(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 100 * time.Millisecond
		h, _, w := newTestHub(t, Config{MaxBufferedPerChannel: 10, PersistInterval: interval})
		ctx := context.Background()
		w.block(true)
		if _, err := h.Create(ctx, "paused", &persist.Generator{Freq: 1000, Max: 50}, 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second) // retries at about 1.3, 2.3, … 5.3 s: the backoff is 1 s
		synctest.Wait()
		if info, _ := h.Info(ctx, "paused"); info.LastSeq != 10 {
			t.Fatalf("paused generator at seq %d, want 10", info.LastSeq)
		}
		w.block(false)
		time.Sleep(interval / 2) // the actor's flush retry comes within interval/4
		synctest.Wait()
		if info, _ := h.Info(ctx, "paused"); info.LastSeq <= 10 {
			t.Fatalf("%v after the writer took the backlog the generator is still at seq %d", interval/2, info.LastSeq)
		}
	})
}

// syncBuffer collects log output written concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestGeneratorPausedWarningsBounded: 200 generators paused by the memory
// bound for 30 s give a few warning lines, one per interval and one count
// of the others, not one line per generator.
func TestGeneratorPausedWarningsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		h, _, w := newTestHub(t, Config{MaxBufferedPerChannel: 10, PersistInterval: 100 * time.Millisecond, Logger: log})
		ctx := context.Background()
		w.block(true)
		const n = 200
		for i := range n {
			if _, err := h.Create(ctx, fmt.Sprintf("g%d", i), &persist.Generator{Freq: 100, Max: 50}, 0); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		out := logs.String()
		lines := strings.Count(out, "generator paused")
		if lines == 0 || lines > 2*(30/10+1) {
			t.Fatalf("%d \"generator paused\" lines for %d paused generators over 30 s:\n%s", lines, n, out)
		}
		if !strings.Contains(out, fmt.Sprintf("repeats=%d", n-1)) {
			t.Errorf("the repeats are not counted:\n%s", out)
		}
	})
}
