package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/messages-server/messages/persist"
	"github.com/messages-server/messages/ws/wire"
)

// TestAppendRequestIsOneStep: the messages of one request are appended in
// one actor step, so appends from other producers never land between them.
func TestAppendRequestIsOneStep(t *testing.T) {
	h, _, _ := newTestHub(t, Config{})
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

// TestAppendRequestReservesAll: a request's messages are counted at their
// real cost (one message of a binary channel with its base64 frame, a
// request of several as one run of their bytes) and reserved together: a
// request that does not fit the channel's bound appends nothing, even when
// its first messages would fit.
func TestAppendRequestReservesAll(t *testing.T) {
	h, st, w := newTestHub(t, Config{MaxChannelBytes: 64 << 10})
	w.Block(true) // nothing is persisted: every message stays counted
	ctx := context.Background()
	_, err := h.create(ctx, "bin", func(context.Context) (persist.Channel, error) {
		c := persist.Channel{ID: "bin", Epoch: 1, CreatedAt: time.Now(), ContentType: "application/octet-stream"}
		st.Put(c, nil)
		return c, nil
	}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{0xff}, 12<<10) // not UTF-8: a binary channel's bytes
	// A request that finds the channel empty may pass the channel's own
	// bound (one large batch is never refused for good), so one message
	// waits to be persisted first.
	if seq, err := h.appendRequest(ctx, "bin", [][]byte{chunk[:100]}, false, nil); err != nil || seq != 1 {
		t.Fatalf("append: seq %d, %v; want 1", seq, err)
	}
	first := msgCost(wire.NewBinaryMessage(1, 0, chunk[:100]))
	// Five chunks fit the bound; six do not.
	if _, err := h.appendRequest(ctx, "bin", [][]byte{chunk, chunk, chunk, chunk, chunk, chunk}, false, nil); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("a request past the channel's bound: %v, want ErrOverloaded", err)
	}
	if info, err := h.Info(ctx, "bin"); err != nil || info.LastSeq != 1 {
		t.Fatalf("after a refused request: last seq %d (%v), want 1: nothing of it appended", info.LastSeq, err)
	}
	if got := h.memBytes.Load(); got != first {
		t.Fatalf("after a refused request %d bytes are counted, want %d", got, first)
	}
	seq, err := h.appendRequest(ctx, "bin", [][]byte{chunk[:100], chunk[:200]}, false, nil)
	if err != nil || seq != 3 {
		t.Fatalf("append: seq %d, %v; want 3", seq, err)
	}
	want := first + msgCost(wire.NewRun(2, 0, slices.Grow([]byte(nil), 300), slices.Grow([]uint32(nil), 2)[:2], true))
	if got := h.memBytes.Load(); got != want {
		t.Fatalf("two binary messages counted as %d bytes, want %d", got, want)
	}
}
