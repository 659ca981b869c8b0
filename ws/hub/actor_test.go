package hub

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/messages-server/messages/persist"
)

// storedSeqs returns how many messages the fake store holds for id, and
// fails t unless their seqs are 1..n in order.
func storedSeqs(t *testing.T, st *memStore, id string) int {
	t.Helper()
	msgs, err := st.Messages(context.Background(), id, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("stored seq %d at %d", m.Seq, i)
		}
	}
	return len(msgs)
}

// TestPersistInterval: a message waits in the buffer for PersistInterval
// and no longer; an append that waits for persistence flushes at once and
// takes the buffered messages along.
func TestPersistInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 100 * time.Millisecond
		h, st, _ := newTestHub(t, Config{PersistInterval: interval})
		ctx := context.Background()
		if _, err := h.Create(ctx, "pi", nil, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Append(ctx, "pi", []byte("a"), false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(interval - time.Nanosecond)
		synctest.Wait()
		if n := storedSeqs(t, st, "pi"); n != 0 {
			t.Fatalf("stored %d messages before the interval, want 0", n)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if n := storedSeqs(t, st, "pi"); n != 1 {
			t.Fatalf("stored %d messages after the interval, want 1", n)
		}

		if _, err := h.Append(ctx, "pi", []byte("b"), false); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		seq, err := h.Append(ctx, "pi", []byte("c"), true)
		if err != nil || seq != 3 {
			t.Fatalf("waiting append: seq %d, %v; want 3", seq, err)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("waiting append took %v, want no wait for the timer", d)
		}
		if n := storedSeqs(t, st, "pi"); n != 3 {
			t.Fatalf("stored %d messages after a waiting append, want 3", n)
		}
	})
}

// TestBackPressure: with the writer refusing batches, appends are buffered
// up to the bound, then refused with ErrOverloaded; the actor keeps
// retrying the flush every quarter of PersistInterval, and nothing
// accepted is lost once the writer takes batches again.
func TestBackPressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 100 * time.Millisecond
		h, st, w := newTestHub(t, Config{MaxBufferedPerChannel: 10, PersistInterval: interval})
		ctx := context.Background()
		if _, err := h.Create(ctx, "bp", nil, 0); err != nil {
			t.Fatal(err)
		}
		w.Block(true)
		for i := 1; i <= 10; i++ {
			if _, err := h.Append(ctx, "bp", []byte("x"), false); err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
		if _, err := h.Append(ctx, "bp", []byte("x"), false); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("append past the bound: %v, want ErrOverloaded", err)
		}
		// Flushes are due at the interval, then retried every quarter of
		// it; the sleeps end between two retries.
		time.Sleep(2*interval + interval/8)
		synctest.Wait()
		if n := storedSeqs(t, st, "bp"); n != 0 {
			t.Fatalf("stored %d messages while the writer refuses, want 0", n)
		}
		if _, err := h.Append(ctx, "bp", []byte("x"), false); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("append while the writer refuses: %v, want ErrOverloaded", err)
		}
		w.Block(false)
		time.Sleep(interval / 4)
		synctest.Wait()
		if n := storedSeqs(t, st, "bp"); n != 10 {
			t.Fatalf("stored %d messages a retry after the writer recovered, want 10", n)
		}
		seq, err := h.Append(ctx, "bp", []byte("y"), true)
		if err != nil || seq != 11 {
			t.Fatalf("append after recovery: seq %d, %v; want 11", seq, err)
		}
		if n := storedSeqs(t, st, "bp"); n != 11 {
			t.Fatalf("stored %d messages, want 11", n)
		}
	})
}

// TestGeneratorPace: a generator appends its lines on schedule, at its
// frequency, and closes the channel after the last one.
func TestGeneratorPace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, st, _ := newTestHub(t, Config{})
		ctx := context.Background()
		// Line i is due (i-1)/freq after the start: 0, 100, 200, 300, 400ms.
		if _, err := h.Create(ctx, "gen", &persist.Generator{Freq: 10, Max: 5}, 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
		synctest.Wait()
		info, err := h.Info(ctx, "gen")
		if err != nil || info.LastSeq != 3 || !info.Open {
			t.Fatalf("after 250ms: %+v, %v; want 3 lines, open", info, err)
		}
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		info, err = h.Info(ctx, "gen")
		if err != nil || info.LastSeq != 5 || info.Open {
			t.Fatalf("after 450ms: %+v, %v; want 5 lines, closed", info, err)
		}
		if n := storedSeqs(t, st, "gen"); n != 5 {
			t.Fatalf("stored %d lines, want 5", n)
		}
		msgs, _ := st.Messages(ctx, "gen", 0, 5)
		if got, want := string(msgs[4].Data), string(generatorLine(5, "gen")); got != want {
			t.Fatalf("line 5 is %q, want %q", got, want)
		}
	})
}

// TestCloseEndsSubscribers: closing a channel delivers end to registered
// subscribers after every message, and later subscribers are served from
// the store.
func TestCloseEndsSubscribers(t *testing.T) {
	h, _, _ := newTestHub(t, Config{})
	ctx := context.Background()
	if _, err := h.Create(ctx, "c", nil, 0); err != nil {
		t.Fatal(err)
	}
	_, reg, err := h.subscribe(ctx, "c", 0, true)
	if err != nil || reg == nil {
		t.Fatalf("subscribe: %v", err)
	}
	for i := 0; i < 3; i++ {
		if _, err := h.Append(ctx, "c", []byte("m"), false); err != nil {
			t.Fatal(err)
		}
	}
	last, err := h.Close(ctx, "c")
	if err != nil || last != 3 {
		t.Fatalf("close: %d %v", last, err)
	}
	var got []int64
	for m := range reg.s.queue {
		got = append(got, m.Seq)
	}
	if len(got) != 3 || reg.s.reason != reasonEnded || reg.s.endSeq != 3 {
		t.Fatalf("got %v, reason %d, end %d", got, reg.s.reason, reg.s.endSeq)
	}
	snap, reg2, err := h.subscribe(ctx, "c", 0, true)
	if err != nil || reg2 != nil || snap.persisted != 3 || snap.lastSeq != 3 {
		t.Fatalf("after close: %+v %v %v", snap, reg2, err)
	}
	if _, err := h.Append(ctx, "c", []byte("late"), false); !errors.Is(err, ErrChannelClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

// BenchmarkFanout measures one append delivered to 1,000 subscribers'
// queues, with every subscriber draining its queue on its own goroutine.
func BenchmarkFanout(b *testing.B) {
	const subs = 1000
	h, _, _ := newTestHub(b, Config{QueueLen: 4096, MaxBufferedPerChannel: 1 << 30, MaxBufferedBytes: 1 << 40})
	ctx := context.Background()
	if _, err := h.Create(ctx, "fan", nil, 0); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < subs; i++ {
		_, reg, err := h.subscribe(ctx, "fan", 0, true)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range reg.s.queue {
			}
		}()
	}
	data := []byte("42: a message of about forty bytes....\n")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.Append(ctx, "fan", data, false); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := h.Close(ctx, "fan"); err != nil {
		b.Fatal(err)
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N*subs)/b.Elapsed().Seconds(), "deliveries/s")
}
