package ws

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestBackPressure: with the writer refusing batches, appends are buffered
// up to the bound, then refused with ErrOverloaded; nothing accepted is lost
// once the writer takes batches again.
func TestBackPressure(t *testing.T) {
	h, st, w := newTestHub(t, HubConfig{MaxBufferedPerChannel: 10, PersistInterval: time.Millisecond})
	ctx := context.Background()
	if _, err := h.Create(ctx, "bp", nil, 0); err != nil {
		t.Fatal(err)
	}
	w.block(true)
	for i := 1; i <= 10; i++ {
		if _, err := h.Append(ctx, "bp", []byte("x"), false); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if _, err := h.Append(ctx, "bp", []byte("x"), false); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("append past the bound: %v, want ErrOverloaded", err)
	}
	w.block(false)
	// The actor retries the flush on its own; then appends are taken again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := h.Append(ctx, "bp", []byte("y"), true)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrOverloaded) || time.Now().After(deadline) {
			t.Fatalf("append after recovery: %v", err)
		}
		time.Sleep(time.Millisecond) // polling step
	}
	msgs, _ := st.Messages(ctx, "bp", 0, 100)
	if len(msgs) != 11 {
		t.Fatalf("stored %d messages, want 11", len(msgs))
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("stored seq %d at %d", m.Seq, i)
		}
	}
}

// TestCloseEndsSubscribers: closing a channel delivers end to registered
// subscribers after every message, and later subscribers are served from
// the store.
func TestCloseEndsSubscribers(t *testing.T) {
	h, _, _ := newTestHub(t, HubConfig{})
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
	h, _, _ := newTestHub(b, HubConfig{QueueLen: 4096, MaxBufferedPerChannel: 1 << 30, MaxBufferedBytes: 1 << 40})
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
