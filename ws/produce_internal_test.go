package ws

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestAppendRequestIsOneStep: the messages of one request are appended in
// one actor step, so appends from other producers never land between them.
func TestAppendRequestIsOneStep(t *testing.T) {
	h, _, _ := newTestHub(t, HubConfig{})
	ctx := context.Background()
	if _, err := h.Create(ctx, "batches", nil, 0); err != nil {
		t.Fatal(err)
	}
	const producers, requests, size = 4, 50, 5
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for r := range requests {
				msgs := make([][]byte, size)
				for i := range msgs {
					msgs[i] = fmt.Appendf(nil, "%d/%d/%d", p, r, i)
				}
				if _, err := h.appendRequest(ctx, "batches", msgs, false, nil); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				if _, err := h.Append(ctx, "batches", fmt.Appendf(nil, "single %d/%d", p, r), false); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	msgs, err := h.History(ctx, "batches", 0, producers*requests*(size+1))
	if err != nil || len(msgs) != producers*requests*(size+1) {
		t.Fatalf("history: %d messages, %v", len(msgs), err)
	}
	for i := 0; i < len(msgs); i++ {
		d := string(msgs[i].Data)
		if strings.HasPrefix(d, "single") || !strings.HasSuffix(d, "/0") {
			continue
		}
		prefix := strings.TrimSuffix(d, "0")
		for k := 1; k < size; k++ {
			if got := string(msgs[i+k].Data); got != prefix+fmt.Sprint(k) {
				t.Fatalf("seq %d: %q inside the request that starts with %q at seq %d", msgs[i+k].Seq, got, d, msgs[i].Seq)
			}
		}
	}
}
