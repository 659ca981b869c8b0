package hub

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// running returns the actor of id, if one runs.
func running(h *Hub, id string) *channel {
	c, _ := h.owner(id)
	return c
}

// TestIdleEviction: an open channel without requests, subscribers or
// unpersisted messages leaves memory after one to two IdleEvict, keeps its
// epoch and seqs when it comes back on demand, and is kept while it has a
// subscriber or keeps getting requests.
func TestIdleEviction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = time.Minute
		h, _, _ := newTestHub(t, Config{IdleEvict: idle, PersistInterval: 100 * time.Millisecond})
		ctx := context.Background()
		for _, id := range []string{"quiet", "busy", "watched"} {
			if _, err := h.Create(ctx, id, nil, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := h.Append(ctx, id, []byte("1"), false); err != nil {
				t.Fatal(err)
			}
		}
		_, reg, err := h.subscribe(ctx, "watched", 0, true)
		if err != nil {
			t.Fatal(err)
		}
		for range 4 { // two idle periods, with requests to busy all along
			time.Sleep(idle / 2)
			if _, err := h.Append(ctx, "busy", []byte("more"), false); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if running(h, "quiet") != nil {
			t.Fatal("quiet is still in memory after two idle periods")
		}
		if running(h, "busy") == nil || running(h, "watched") == nil {
			t.Fatal("a channel with requests or a subscriber was evicted")
		}
		// Back on demand, at the same epoch, the seqs going on.
		seq, err := h.Append(ctx, "quiet", []byte("2"), false)
		if err != nil || seq != 2 {
			t.Fatalf("append after eviction: seq %d, %v; want 2", seq, err)
		}
		info, err := h.Info(ctx, "quiet")
		if err != nil || info.Epoch != "1" || !info.Open {
			t.Fatalf("after eviction: %+v, %v; want epoch 1, open", info, err)
		}
		h.unregister(reg)
		time.Sleep(2 * idle)
		synctest.Wait()
		if running(h, "watched") != nil {
			t.Fatal("watched stayed in memory after its subscriber left")
		}
	})
}
