package hub

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/messages-server/messages/persist"
)

// TestReleasedWakesOnlyWhatFits: generators paused by the hub's memory
// bound are woken in the order they paused, and a release wakes only as
// many as the room it left fits, not every one of them.
func TestReleasedWakesOnlyWhatFits(t *testing.T) {
	h := &Hub{cfg: Config{MaxBufferedBytes: 1000}}
	h.memBytes.Store(1000)
	cs := make([]*channel, 5)
	for i := range cs {
		cs[i] = &channel{}
		h.waitRoom(cs[i], 100)
	}
	h.waitRoom(cs[0], 100) // paused again before it was woken: one place
	woken := func() []int {
		var out []int
		for i, c := range cs {
			if c.sig.Swap(0)&sigRoom != 0 {
				out = append(out, i)
			}
		}
		return out
	}
	h.released()
	if w := woken(); len(w) != 0 || len(h.roomWait) != 5 {
		t.Fatalf("no room: woken %v, %d waiting, want none and 5", w, len(h.roomWait))
	}
	h.memBytes.Store(750) // room for two lines
	h.released()
	if w := woken(); fmt.Sprint(w) != "[0 1]" || len(h.roomWait) != 3 {
		t.Fatalf("room for two: woken %v, %d waiting, want [0 1] and 3", w, len(h.roomWait))
	}
	h.waitRoom(cs[0], 100) // paused again: behind the others
	h.memBytes.Store(850)
	h.released()
	if w := woken(); fmt.Sprint(w) != "[2]" {
		t.Fatalf("room for one: woken %v, want [2]", w)
	}
	h.memBytes.Store(0)
	h.released()
	if w := woken(); fmt.Sprint(w) != "[0 3 4]" || len(h.roomWait) != 0 || h.awaiting.Load() {
		t.Fatalf("room for all: woken %v, %d waiting (awaiting %v), want [0 3 4] and none", w, len(h.roomWait), h.awaiting.Load())
	}
}

// TestGeneratorsResumeWhenHubMemoryFrees: generators paused by the hub's
// memory bound (not their channels' own) all go on once the writer
// persists the backlog.
func TestGeneratorsResumeWhenHubMemoryFrees(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _, w := newTestHub(t, Config{MaxBufferedBytes: 64 << 10, PersistInterval: 100 * time.Millisecond})
		ctx := context.Background()
		w.Block(true)
		const n = 20
		for i := range n {
			if _, err := h.Create(ctx, fmt.Sprintf("g%02d", i), &persist.Generator{Freq: 100, Max: 100000}, 0); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		paused := make([]int64, n)
		var total int64
		for i := range n {
			info, _ := h.Info(ctx, fmt.Sprintf("g%02d", i))
			paused[i] = info.LastSeq
			total += info.LastSeq
		}
		if total >= 3*100*n {
			t.Fatalf("%d lines buffered under a 64 KiB bound with the writer blocked: not paused", total)
		}
		h.roomMu.Lock()
		waiting := len(h.roomWait)
		h.roomMu.Unlock()
		if waiting == 0 {
			t.Fatalf("no generator waits for room with the bound reached")
		}
		w.Block(false)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		for i := range n {
			info, _ := h.Info(ctx, fmt.Sprintf("g%02d", i))
			if info.LastSeq <= paused[i] {
				t.Errorf("g%02d still at seq %d once the writer took the backlog", i, info.LastSeq)
			}
		}
	})
}

// countingWriter refuses every batch while full is set, counting the
// batches offered.
type countingWriter struct {
	memWriter
	offered atomic.Int64
}

func (w *countingWriter) TryEnqueue(b *persist.Batch) bool {
	w.offered.Add(1)
	return w.memWriter.TryEnqueue(b)
}

// TestFlushSkippedWhileWriterFull: once the writer's queue refused a batch,
// the other channels due for a flush in the same tick of the wheel do not
// build and offer theirs; they keep buffering and are persisted once the
// queue has room. Actors run in parallel, so up to one batch per processor
// may be offered before the first refusal is seen, never one per channel.
func TestFlushSkippedWhileWriterFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		w := &countingWriter{memWriter: memWriter{Store: st}}
		h := New(Config{Store: st, Writer: w, PersistInterval: 100 * time.Millisecond})
		defer func() {
			w.Block(false)
			if err := h.Stop(context.Background()); err != nil {
				t.Errorf("stop: %v", err)
			}
		}()
		ctx := context.Background()
		procs := runtime.GOMAXPROCS(0)
		n := 8 * procs
		for i := range n {
			if _, err := h.Create(ctx, fmt.Sprintf("c%d", i), nil, 0); err != nil {
				t.Fatal(err)
			}
		}
		w.Block(true)
		for i := range n {
			if _, err := h.Append(ctx, fmt.Sprintf("c%d", i), []byte("x"), false); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(110 * time.Millisecond) // every flush is due, in one tick
		synctest.Wait()
		if got := w.offered.Load(); got < 1 || got > int64(procs) {
			t.Fatalf("%d batches of %d channels offered to a full writer in one tick, want 1 to %d (one per processor)",
				got, n, procs)
		}
		w.Block(false)
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		for i := range n {
			info, _ := h.Info(ctx, fmt.Sprintf("c%d", i))
			if info.PersistedSeq != 1 {
				t.Errorf("c%d persisted to %d once the writer had room, want 1", i, info.PersistedSeq)
			}
		}
	})
}
