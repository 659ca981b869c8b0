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
		w.Block(true)
		if _, err := h.Create(ctx, "paused", &persist.Generator{Freq: 1000, Max: 50}, 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second) // retries at about 1.3, 2.3, … 5.3 s: the backoff is 1 s
		synctest.Wait()
		if info, _ := h.Info(ctx, "paused"); info.LastSeq != 10 {
			t.Fatalf("paused generator at seq %d, want 10", info.LastSeq)
		}
		w.Block(false)
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
		w.Block(true)
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

// TestJSONBatchCost: the official Durable Streams client sends JSON batches
// of up to 1 MiB. One of 10-byte values (95,000 messages) is held as its
// bytes and an offset per message, not as a Message and a frame each: it is
// counted at less than 3 MiB (it was 24.7 MiB), what it really takes on the
// heap is about what is counted, and every message reads back in order.
func TestJSONBatchCost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		w := &holdWriter{}
		h := New(Config{Store: st, Writer: w, PersistInterval: time.Second})
		defer func() {
			w.release()
			if err := h.Stop(context.Background()); err != nil {
				t.Error(err)
			}
		}()
		ctx := context.Background()
		if _, err := h.Create(ctx, "batch", nil, 0); err != nil {
			t.Fatal(err)
		}
		// As splitJSON leaves a body of 1 MiB: an allocation per element.
		var elems [][]byte
		for size := 1; size+11 <= 1<<20; size += 11 {
			elems = append(elems, fmt.Appendf(nil, `"%08d"`, len(elems)))
		}
		before := heapAlloc()
		seq, err := h.appendRequest(ctx, "batch", elems, false, nil)
		if err != nil || seq != int64(len(elems)) {
			t.Fatalf("append: seq %d, %v; want %d", seq, err, len(elems))
		}
		time.Sleep(time.Second) // the flush: the batch is in flight
		synctest.Wait()
		real := int64(heapAlloc() - before)
		runtime.KeepAlive(elems) // the request's own memory, not the channel's
		counted := h.memBytes.Load()
		t.Logf("%d messages of 10 bytes: counted %d B (%.1f B/message), real %d B", len(elems), counted,
			float64(counted)/float64(len(elems)), real)
		if counted > 3<<20 {
			t.Errorf("a 1 MiB JSON batch is counted at %d bytes, more than 3 MiB", counted)
		}
		// The heap also holds what no message is counted for (the batch in
		// flight itself, a few hundred bytes), and whatever tests running
		// in parallel allocate: 5 % of slack.
		if real > counted+counted/20 {
			t.Errorf("a 1 MiB JSON batch takes %d bytes but is counted as %d", real, counted)
		}
		got, err := h.History(ctx, "batch", 40000, 5)
		if err != nil || len(got) != 5 {
			t.Fatalf("history: %d messages, %v", len(got), err)
		}
		for i, m := range got {
			if want := fmt.Sprintf(`"%08d"`, 40000+i); m.Seq != int64(40001+i) || string(m.Data) != want {
				t.Fatalf("history: seq %d %q, want %d %q", m.Seq, m.Data, 40001+i, want)
			}
		}
		w.mu.Lock()
		b := w.batches[0]
		w.mu.Unlock()
		n := 0
		b.Each(func(m persist.Message) bool {
			if want := fmt.Sprintf(`"%08d"`, n); m.Seq != int64(n+1) || string(m.Data) != want {
				t.Fatalf("batch in flight: seq %d %q, want %d %q", m.Seq, m.Data, n+1, want)
			}
			n++
			return true
		})
		if n != len(elems) || b.Rows() != n || b.LastSeq() != int64(n) {
			t.Fatalf("batch in flight: %d messages, Rows %d, LastSeq %d; want %d", n, b.Rows(), b.LastSeq(), len(elems))
		}
	})
}
