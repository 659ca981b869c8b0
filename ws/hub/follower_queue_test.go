package hub

import (
	"testing"
)

// TestFollowerQueueCounted: the owner's events waiting for a follower's
// actor count against the hub's memory bound while they wait; one that
// would pass the bound is dropped and marks the queue lost (the follower
// resyncs); taking the events back, or closing the queue, gives their
// bytes back, and a closed queue counts nothing more.
func TestFollowerQueueCounted(t *testing.T) {
	const bound = 64 << 10
	h, _, _ := newTestHub(t, Config{MaxBufferedBytes: bound, MaxChannelBytes: 1 << 30})
	q := &eventQueue{wake: make(chan struct{}, 1)}
	data := make([]byte, 10<<10)
	cost := int64(len(data)) + eventOverhead
	base := h.memBytes.Load()
	fits := int((bound - base) / cost)
	for i := range fits {
		q.deliver(h, Event{Kind: EventMessage, Seq: int64(i + 1), Data: data})
		if got := h.memBytes.Load() - base; got != int64(i+1)*cost {
			t.Fatalf("after %d events the hub counts %d bytes, want %d", i+1, got, int64(i+1)*cost)
		}
	}
	select {
	case <-q.wake:
	default:
		t.Fatal("queued events did not wake the actor")
	}
	q.deliver(h, Event{Kind: EventMessage, Seq: int64(fits + 1), Data: data}) // past the bound
	if got := h.memBytes.Load() - base; got != int64(fits)*cost {
		t.Fatalf("an event past the bound was counted: %d bytes, want %d", got, int64(fits)*cost)
	}
	events, lost := q.take(h)
	if len(events) != fits || !lost {
		t.Fatalf("take = %d events, lost %v; want %d, lost", len(events), lost, fits)
	}
	if got := h.memBytes.Load(); got != base {
		t.Fatalf("after take the hub counts %d bytes, want %d", got, base)
	}
	q.close(h)
	q.deliver(h, Event{Kind: EventMessage, Seq: 99, Data: data})
	if got := h.memBytes.Load(); got != base {
		t.Fatalf("a closed queue counted an event: %d bytes, want %d", got, base)
	}
}
